"""A small HTTP load generator for the rows that need clients at several addresses.

wrk can't bind a source address, and the service tells clients apart by nginx's ``$remote_addr``
(fair turns and the address bucket both key on it), so these rows send from threads of their
own, each with an ``http.client.HTTPConnection`` bound to a loopback address of the 127.0.0.0/8
range (Linux answers on all of them, and nginx listens on 127.0.0.1). Everything here is
bounded: a fixed number of requests, or loops that stop on an event and are joined with a
timeout.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

# Long enough for a login that waits its whole BCRYPT_WAIT_SECONDS (at most 20) and its check.
TIMEOUT_SECONDS = 40.0
ERROR_STATUS = 0  # a connection that failed or closed before an answer


@dataclass(frozen=True)
class Request:
    """One HTTP request: method, path with query, header fields, body."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True)
class Answer:
    """What one request got: its status (0 for a connection error), how long it took from
    sending to the whole body read, and when it ended (``time.perf_counter``)."""

    status: int
    seconds: float
    ended: float
    token: bool = False  # the body holds a token


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile: the smallest value at least ``pct`` percent of the values
    are at or below (so the p99 of 8 values is the largest). 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Sample:
    """The answers of one kind of request in one measurement."""

    answers: tuple[Answer, ...]
    started: float  # perf_counter when the first request of the sample was sent

    @property
    def requests(self) -> int:
        return len(self.answers)

    @property
    def statuses(self) -> dict[int, int]:
        return dict(sorted(Counter(answer.status for answer in self.answers).items()))

    @property
    def not_ok(self) -> int:
        """Answers other than 200 with a token (connection errors included)."""
        return sum(1 for answer in self.answers if answer.status != 200 or not answer.token)

    def latency_ms(self, pct: float) -> float:
        return percentile([answer.seconds for answer in self.answers], pct) * 1000

    @property
    def last_seconds(self) -> float:
        """From the first request sent to the last answer."""
        return max((a.ended for a in self.answers), default=self.started) - self.started

    def status_text(self) -> str:
        """The status mix, e.g. ``200: 30, 503: 2`` (``error`` for connection errors)."""
        return ", ".join(
            f"{'error' if code == ERROR_STATUS else code}: {count}"
            for code, count in self.statuses.items()
        )


class Client:
    """One keep-alive connection to nginx from ``source`` (an address on this machine)."""

    def __init__(self, host: str, port: int, source: str) -> None:
        self._connection = http.client.HTTPConnection(
            host, port, timeout=TIMEOUT_SECONDS, source_address=(source, 0)
        )

    def connect(self) -> None:
        """Open the connection now, so that a burst's requests need no handshake."""
        self._connection.connect()

    def send(self, request: Request) -> Answer:
        """Send ``request`` and read the whole answer; a failed connection is reopened on the
        next request."""
        started = time.perf_counter()
        try:
            self._connection.request(
                request.method, request.path, body=request.body, headers=request.headers
            )
            response = self._connection.getresponse()
            body = response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            self._connection.close()
            status, body = ERROR_STATUS, b""
        ended = time.perf_counter()
        return Answer(status, ended - started, ended, b'"token"' in body)

    def close(self) -> None:
        """Close the connection; a request under way in another thread ends with an error."""
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by the other end
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked reading it
        self._connection.close()


def burst(host: str, port: int, source: str, requests: Sequence[Request]) -> Sample:
    """Send ``requests`` at the same moment, each on its own connection (opened beforehand),
    and wait for every answer."""
    clients = [Client(host, port, source) for _ in requests]
    answers: list[Answer | None] = [None] * len(requests)
    released: list[float] = []
    gate = threading.Barrier(len(requests) + 1, action=lambda: released.append(time.perf_counter()))

    def one(index: int) -> None:
        gate.wait()
        answers[index] = clients[index].send(requests[index])

    try:
        for client in clients:
            client.connect()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
        for thread in threads:
            thread.start()
        gate.wait()
        for thread in threads:
            thread.join(TIMEOUT_SECONDS + 5)
    finally:
        for client in clients:
            client.close()
    got = [a if a is not None else Answer(ERROR_STATUS, TIMEOUT_SECONDS, 0.0) for a in answers]
    return Sample(tuple(got), released[0])


class Loop:
    """Threads that each send requests on their own connection from ``source`` until stopped:
    ``next_request()`` gives each request; with ``interval``, a thread sends at most one per
    ``interval`` seconds (a paced probe, so that measuring does not load the stack itself)."""

    def __init__(
        self,
        host: str,
        port: int,
        source: str,
        connections: int,
        next_request: Callable[[], Request | None],
        interval: float = 0.0,
    ) -> None:
        self._clients = [Client(host, port, source) for _ in range(connections)]
        self._next = next_request
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._answers: list[Answer] = []
        self._threads = [threading.Thread(target=self._run, args=(c,)) for c in self._clients]
        self.started = 0.0

    def start(self) -> Loop:
        self.started = time.perf_counter()
        for thread in self._threads:
            thread.start()
        return self

    def _run(self, client: Client) -> None:
        due = time.perf_counter()
        while not self._stop.is_set():
            request = self._next()
            if request is None:  # nothing left to send
                return
            answer = client.send(request)
            with self._lock:
                self._answers.append(answer)
            if self._interval:
                # One request per interval, never a catch-up burst after a slow one.
                due = max(due + self._interval, time.perf_counter())
                self._stop.wait(max(0.0, due - time.perf_counter()))

    def signal_stop(self) -> None:
        """Send no more requests (those under way are still answered); :meth:`stop` collects."""
        self._stop.set()

    def stop(self, timeout: float = TIMEOUT_SECONDS + 5) -> Sample:
        """Stop sending, wait (bounded) for the requests under way, and return every answer.
        To stop several loops at one moment, :meth:`signal_stop` them all first."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for client in self._clients:
            client.close()  # also ends a request still waiting past the deadline
        for thread in self._threads:
            thread.join(5)
        with self._lock:
            return Sample(tuple(self._answers), self.started)

    def wait(self, timeout: float) -> Sample:
        """Wait (bounded) until ``next_request`` runs out, then stop."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return self.stop()


def shared(items: Iterator[Request]) -> Callable[[], Request | None]:
    """``next_request`` for a :class:`Loop` whose threads share one sequence of requests."""
    lock = threading.Lock()

    def next_request() -> Request | None:
        with lock:
            return next(items, None)

    return next_request


def stop_all(loops: Sequence[Loop]) -> list[Sample]:
    """Stop every loop at the same moment, then collect each one's answers."""
    for loop in loops:
        loop.signal_stop()
    return [loop.stop() for loop in loops]
