"""Fair, bounded bcrypt work: logins wait their turn, and no client can take the turns of others.

At most ``BCRYPT_CONCURRENCY`` checks run at once across all of uWSGI's workers: the cores are the
machine's, so the bound is too (the turns are :class:`.shared_places.SharedPlaces`, which the
kernel frees when a worker dies). A login that finds every turn taken waits for one, up to
``BCRYPT_WAIT_SECONDS``; only a login that could not start within that time is refused
(:class:`Overloaded`, 503 with ``Retry-After``). Clients do not retry a 503 from the token
endpoint, so refusing a login the cores could check a moment later fails a pull or a push.

Waiting logins take turns by client address, then by user name within an address: the next
turn goes to the address that had the fewest since it began to wait, so an address with 60
logins waiting delays another address's one login by a few checks, not 60, and while other
addresses wait, an address is not given more than its share of the turns. Each worker keeps its
own queue, and one dispatcher thread per worker (both made on first use in the worker: threads
do not survive uWSGI's fork) starts its queue's next login when a turn is free (it looks every
:data:`TURN_POLL_SECONDS` while it has logins waiting) and no other worker has a login whose
address had fewer turns (:class:`.turn_ledger.TurnLedger`, memory the workers share).

A waiting login holds a uWSGI thread that does nothing until its turn (it uses no CPU). At most
``queue`` logins wait in one worker; uwsgi.ini gives each worker more threads than that, so
cached, refresh-token and anonymous requests always find a thread.

The checks run on this process's own bcrypt threads, at a lower CPU priority
(:data:`BCRYPT_NICENESS`): when the cores are busy, the scheduler serves the cheap requests first
and bcrypt takes what is left.

Identical checks share one run: while a user and password are being checked, the same pair waits
for that answer instead of starting its own. The 32 parallel requests of a
``docker compose pull`` with one password cost one bcrypt check per worker, not 32.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

from auth_service.errors import Overloaded  # raised here; its answer is errors.OVERLOADED
from auth_service.forked import PerProcess
from auth_service.passwords.shared_places import SharedPlaces
from auth_service.passwords.turn_ledger import NO_LOGIN, TurnLedger

T = TypeVar("T")

log = logging.getLogger(__name__)

# How often a worker with logins waiting looks for a free turn: a turn stays idle half of this on
# average, against tens of milliseconds of bcrypt, and only one thread per worker looks.
TURN_POLL_SECONDS = 0.001
# How often a worker with logins waiting tells the others the score of its next one, while it
# holds no turn.
PUBLISH_SECONDS = 0.005
# Enough that cheap requests go first under a flood, not so much that bcrypt falls behind what
# the cores allow (benchmarks/README.md).
BCRYPT_NICENESS = 5
# Longest a started check may take before the request stops waiting for it: far beyond bcrypt's
# highest sane cost, and within uWSGI's harakiri.
MAX_CHECK_SECONDS = 15.0


# Threads of a uWSGI worker that waiting logins never take: those of the running checks, and
# room for the cheap requests that must not queue behind logins.
RESERVED_THREADS = 8
# Waiting logins per process outside uWSGI (the development server, tests).
DEFAULT_QUEUE = 64


def default_queue_limit() -> int:
    """How many logins may wait in this process: all but :data:`RESERVED_THREADS` of a uWSGI
    worker's threads (``threads`` in uwsgi.ini), or :data:`DEFAULT_QUEUE` outside uWSGI."""
    try:
        import uwsgi  # type: ignore[import-not-found]  # exists only inside uWSGI
    except ImportError:
        return DEFAULT_QUEUE
    threads = uwsgi.opt.get("threads", b"1")
    if isinstance(threads, list):  # an option given twice: the last one counts
        threads = threads[-1]
    return max(1, int(threads) - RESERVED_THREADS)


def _lower_priority() -> None:
    """Make the calling thread yield the CPU to request threads (Linux: niceness is per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BCRYPT_NICENESS)
    except OSError as exc:  # not permitted here: bcrypt runs at normal priority, still bounded
        log.warning("bcrypt threads keep normal priority: %s", exc)


class _Flight(Generic[T]):
    """One login being checked, and the answer (or exception) its copies will share."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class _Ticket:
    """One login waiting for a turn, and where its check's answer will be."""

    __slots__ = ("check", "address", "user", "started", "answer")

    def __init__(self, check: Callable[[], object], address: str, user: str) -> None:
        self.check = check
        self.address = address
        self.user = user
        self.started = threading.Event()  # set by the dispatcher, under the queue's lock
        self.answer: Future = Future()


class FairQueue:
    """Waiting tickets, handed out round-robin by address, then by user within an address."""

    def __init__(self) -> None:
        self._by_address: OrderedDict[str, OrderedDict[str, deque[_Ticket]]] = OrderedDict()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def addresses(self) -> set[str]:
        return set(self._by_address)

    def push(self, ticket: _Ticket) -> None:
        users = self._by_address.setdefault(ticket.address, OrderedDict())
        users.setdefault(ticket.user, deque()).append(ticket)
        self._count += 1

    def remove(self, ticket: _Ticket) -> None:
        users = self._by_address[ticket.address]
        tickets = users[ticket.user]
        tickets.remove(ticket)
        self._count -= 1
        if not tickets:
            del users[ticket.user]
            if not users:
                del self._by_address[ticket.address]

    def waiting(self, address: str) -> bool:
        return address in self._by_address

    def next_address(
        self, over_share: Callable[[str], bool], turns_had: Callable[[str], int]
    ) -> str | None:
        """Whose login is next: of the addresses not ``over_share``, the one that had the fewest
        turns (the first in line among equals); an address over its share is passed over while
        another waits, but a turn is never left idle for it."""
        if not self._by_address:
            return None
        eligible = [a for a in self._by_address if not over_share(a)] or list(self._by_address)
        return min(eligible, key=turns_had)

    def pop(self, chosen: str) -> _Ticket:
        """The next ticket of address ``chosen``: its users take turns."""
        users = self._by_address[chosen]
        user, tickets = next(iter(users.items()))
        ticket = tickets.popleft()
        self._count -= 1
        # Whoever was served goes to the back of the line: its next login waits for the others'.
        if tickets:
            users.move_to_end(user)
        else:
            del users[user]
        if users:
            self._by_address.move_to_end(chosen)
        else:
            del self._by_address[chosen]
        return ticket


class BcryptGate:
    """Admits bcrypt checks: a few at a time, the rest waiting their turn fairly, identical ones
    shared. ``queue`` bounds the logins waiting in this process; ``wait_seconds`` how long each
    may wait before it is refused."""

    def __init__(self, concurrency: int, queue: int, wait_seconds: float = 10.0) -> None:
        self.concurrency = concurrency
        self.queue_limit = queue
        self.wait_seconds = wait_seconds
        # Made here, so that they are shared with the forked workers.
        self._turns = SharedPlaces(concurrency)
        self._ledger = TurnLedger()
        # Threads do not survive a fork: each worker makes its queue and threads on first use.
        self._here: PerProcess[_TurnsHere] = PerProcess(lambda: _TurnsHere(self))

    def in_flight(self, key: bytes) -> bool:
        """Whether a check of ``key`` is running or waiting now (:meth:`run` would join it)."""
        return key in self._here.get().flights

    def run(self, key: bytes, check: Callable[[], T], address: str = "", user: str = "") -> T:
        """``check()``'s answer, shared with every concurrent call of the same ``key``.

        ``address`` and ``user`` name whose turn it is. Raises :class:`Overloaded` when the
        check could not start within ``wait_seconds``, or too many logins already wait.
        """
        here = self._here.get()
        with here.flights_lock:
            flight = here.flights.get(key)
            leader = flight is None
            if leader:
                flight = here.flights[key] = _Flight()
        if not leader:
            return self._follow(flight)
        try:
            flight.result = here.admit(check, address, user)
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with here.flights_lock:
                del here.flights[key]
            flight.done.set()
        return flight.result

    def _follow(self, flight: _Flight[T]) -> T:
        if not flight.done.wait(self.wait_seconds + MAX_CHECK_SECONDS):
            raise Overloaded("a login check took too long")
        if flight.error is not None:
            raise flight.error
        return flight.result  # type: ignore[return-value]


class _TurnsHere:
    """One process's side of a :class:`BcryptGate`: the checks in flight, the logins waiting,
    the dispatcher thread that hands them the turns this process wins, and the bcrypt threads."""

    def __init__(self, gate: BcryptGate) -> None:
        self.concurrency = gate.concurrency
        self.queue_limit = gate.queue_limit
        self.wait_seconds = gate.wait_seconds
        self.turns = gate._turns
        self.ledger = gate._ledger
        self.flights: dict[bytes, _Flight] = {}
        self.flights_lock = threading.Lock()
        self.queue = FairQueue()
        self.running: Counter[str] = Counter()
        self.changed = threading.Condition()
        # As many threads as turns: every running check may be in this process.
        self.pool = ThreadPoolExecutor(self.concurrency, "bcrypt", initializer=_lower_priority)
        threading.Thread(target=self._dispatch, name="bcrypt-turns", daemon=True).start()

    def admit(self, check: Callable[[], T], address: str, user: str) -> T:
        """``check()``'s answer, run on a turn once it is this login's (:meth:`BcryptGate.run`)."""
        changed = self.changed
        ticket = _Ticket(check, address, user)
        with changed, self.ledger.locked() as ledger:
            # Nobody waits, here or in another worker, and a turn is free: no need to queue.
            nobody_waits = not self.queue and ledger.lowest_elsewhere() == NO_LOGIN
            turn = self.turns.try_take() if nobody_waits else None
            if turn is not None:
                ledger.arrived(address)
                self._start(ticket, turn, ledger)
            elif len(self.queue) >= self.queue_limit:
                raise Overloaded("too many logins are waiting to be checked")
            else:
                ledger.arrived(address)
                self.queue.push(ticket)
                changed.notify()  # the dispatcher, if it sleeps on an empty queue
        # Each login sleeps on its own event: a turn wakes one thread, not every waiting one.
        if not ticket.started.wait(self.wait_seconds):
            with changed, self.ledger.locked() as ledger:
                if not ticket.started.is_set():
                    self.queue.remove(ticket)
                    ledger.left(address)
                    raise Overloaded("no bcrypt turn came free in time")
        try:
            return ticket.answer.result(MAX_CHECK_SECONDS)
        except TimeoutError:
            raise Overloaded("a login check took too long") from None

    def _over_share(self, address: str) -> bool:
        active = len(self.queue.addresses() | {a for a, n in self.running.items() if n})
        return self.running[address] >= max(1, math.ceil(self.concurrency / max(1, active)))

    def _dispatch(self) -> None:
        """Start this process's next login whenever a turn is free and no other worker has one
        whose address had fewer turns (the dispatcher thread)."""
        changed = self.changed
        published_at = 0.0
        while True:
            with changed:
                if not self.queue:
                    with self.ledger.locked() as ledger:
                        ledger.publish(None)
                    changed.wait_for(lambda: len(self.queue) > 0)
                    published_at = 0.0
            # Cheap while every turn is taken: one try, and the score told now and then (a
            # score told a moment ago is only a hint: whoever holds a free turn checks again).
            turn = self.turns.try_take()
            if turn is None and time.monotonic() - published_at < PUBLISH_SECONDS:
                time.sleep(TURN_POLL_SECONDS)
                continue
            with changed, self.ledger.locked() as ledger:
                address = self.queue.next_address(self._over_share, ledger.turns_had)
                if address is not None:
                    score = ledger.turns_had(address)
                    ledger.publish(score)
                    published_at = time.monotonic()
                    if turn is not None and score <= ledger.lowest_elsewhere():
                        self._start(self.queue.pop(address), turn, ledger)
                        continue
                if turn is not None:  # another worker's login is next, or ours gave up
                    self.turns.give_back(turn)
            time.sleep(TURN_POLL_SECONDS)

    def _start(self, ticket: _Ticket, turn: int, ledger: TurnLedger) -> None:
        """Run ``ticket``'s check on ``turn`` (called under the queue's lock and the ledger's)."""
        self.running[ticket.address] += 1
        ledger.started(ticket.address)
        ticket.started.set()
        self.pool.submit(self._run_on_turn, ticket, turn)

    def _run_on_turn(self, ticket: _Ticket, turn: int) -> None:
        try:
            ticket.answer.set_result(ticket.check())
        except BaseException as exc:
            ticket.answer.set_exception(exc)
        finally:  # the turn ends with the check, even one its request gave up on
            self.turns.give_back(turn)
            with self.changed, self.ledger.locked() as ledger:
                ledger.left(ticket.address)
                self.running[ticket.address] -= 1
                if not self.running[ticket.address]:
                    del self.running[ticket.address]
