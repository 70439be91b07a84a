"""Bounded bcrypt work: a flood of logins can't take the CPU, or the threads, from everyone else.

Across all of uWSGI's workers at most ``BCRYPT_CONCURRENCY`` checks run and at most
``BCRYPT_QUEUE`` more wait for a turn; a check beyond that is refused at once
(:class:`Overloaded`, a 503 with ``Retry-After``) instead of holding a thread that a cached or
anonymous request could use. The bound is the machine's, not each worker's (the places are
:class:`.shared_places.SharedPlaces`): the cores it protects are shared, and a waiting check
starts as soon as any running one ends, in whichever worker, so bcrypt keeps every core it may
have busy while each worker keeps only the threads it needs.

The checks run on this process's own bcrypt threads, at a lower CPU priority (nice 5): when
the cores are busy, the scheduler serves the cheap requests first and bcrypt takes what is left.

Identical checks share one run: while a user and password are being checked, the same pair
waits for that answer instead of starting its own. The 32 parallel requests of a
``docker compose pull`` with one password cost one bcrypt check per worker, not 32.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from .shared_places import SharedPlaces

T = TypeVar("T")

log = logging.getLogger(__name__)

# Longest a check waits for a turn; far beyond a queue's worth of bcrypt at any sane cost.
MAX_WAIT_SECONDS = 20.0
# How often a waiting check looks for a turn: against ~60 ms of bcrypt at cost 10, a turn stays
# idle 0.5 ms on average, and only the BCRYPT_QUEUE waiting checks look.
TURN_POLL_SECONDS = 0.001
# Enough that cheap requests go first under a flood; not so much that bcrypt, with logins held
# and retried by nginx around it, falls behind what the cores allow (nice 10 gave cold logins
# 0.87-0.89 of bcrypt alone; 0 gave 0.89-0.93, with the flood's p99 16 ms instead of 9).
BCRYPT_NICENESS = 5


def _lower_priority() -> None:
    """Make the calling thread yield the CPU to request threads (Linux: niceness is per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BCRYPT_NICENESS)
    except OSError as exc:  # not permitted here: bcrypt runs at normal priority, still bounded
        log.warning("bcrypt threads keep normal priority: %s", exc)


class Overloaded(Exception):
    """Too much bcrypt work is already running or waiting in this process."""


class _Flight(Generic[T]):
    """One running check, and the answer (or exception) its followers will share."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class BcryptGate:
    """Admits bcrypt checks: a few at a time, a few more waiting, identical ones shared."""

    def __init__(self, concurrency: int, queue: int) -> None:
        self.concurrency = concurrency
        self._places = SharedPlaces(concurrency + queue)  # running or waiting
        self._turns = SharedPlaces(concurrency)  # running
        self._lock = threading.Lock()
        self._flights: dict[bytes, _Flight] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = -1

    def _threads(self) -> ThreadPoolExecutor:
        # Made in the process that uses it: uWSGI forks workers after loading the app, and
        # threads do not survive a fork.
        if self._pool_pid != os.getpid():
            with self._lock:
                if self._pool_pid != os.getpid():
                    # As many threads as turns: every running check may be in this worker.
                    self._pool = ThreadPoolExecutor(
                        self.concurrency, "bcrypt", initializer=_lower_priority
                    )
                    self._pool_pid = os.getpid()
        assert self._pool is not None
        return self._pool

    def in_flight(self, key: bytes) -> bool:
        """Whether a check of ``key`` is running or waiting now (:meth:`run` would join it)."""
        return key in self._flights

    def run(self, key: bytes, check: Callable[[], T]) -> T:
        """``check()``'s answer, shared with every concurrent call of the same ``key``.

        Raises :class:`Overloaded` when the running and waiting places are all taken.
        """
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
        if not leader:
            return self._follow(flight)
        try:
            flight.result = self._admit(check)
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()
        return flight.result

    @staticmethod
    def _follow(flight: _Flight[T]) -> T:
        if not flight.done.wait(MAX_WAIT_SECONDS):
            raise Overloaded("a login check took too long")
        if flight.error is not None:
            raise flight.error
        return flight.result  # type: ignore[return-value]

    def _admit(self, check: Callable[[], T]) -> T:
        place = self._places.try_take()
        if place is None:
            raise Overloaded("too many logins are being checked")
        try:
            turn = self._wait_for_turn()

            def run_on_turn() -> T:
                try:
                    return check()
                finally:  # the turn ends with the check, even one its request gave up on
                    self._turns.give_back(turn)

            future = self._threads().submit(run_on_turn)
            try:
                return future.result(timeout=MAX_WAIT_SECONDS)
            except TimeoutError:
                if future.cancel():  # never started, so never gave its turn back
                    self._turns.give_back(turn)
                raise Overloaded("a login check waited too long") from None
        finally:
            self._places.give_back(place)

    def _wait_for_turn(self) -> int:
        deadline = time.monotonic() + MAX_WAIT_SECONDS
        while (turn := self._turns.try_take()) is None:
            if time.monotonic() > deadline:
                raise Overloaded("a login check waited too long for a turn")
            time.sleep(TURN_POLL_SECONDS)
        return turn
