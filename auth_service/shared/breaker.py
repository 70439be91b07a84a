"""A circuit breaker: after Redis fails, this process doesn't try it again for a second.

An unreachable Redis costs a request its short timeout; without the breaker it would cost every
request that, and a cut-off Redis (one that accepts connections but never answers) would slow
every login to the timeout. With it, each process pays at most one timeout per
``RETRY_SECONDS``: while the breaker is open, callers are told at once not to try, and when the
second is over exactly one caller tries again while the others keep falling back.

The transitions are logged once each (down: a warning; back: an info line) and reported to a
callback (the ``auth_redis_up`` gauge); nothing is logged per request. Back is reported once
Redis has answered for ``RETRY_SECONDS`` without failing: a Redis that answers reads but refuses
writes (out of memory, a read-only replica) closes the breaker with each read and opens it with
the next write, and that must not log two lines a second. The state belongs to one process:
uWSGI's workers each find out for themselves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from auth_service.forked import PerProcess

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.down = False
        self.retry_at = 0.0  # while down: when one caller may try again
        self.reported_down = False  # logged down, and not yet logged back
        self.up_since = 0.0  # when the last failure was followed by a success


class Breaker:
    """Whether this process should try Redis now; told of each success and failure."""

    def __init__(
        self,
        down_message: str,
        up_message: str,
        on_change: Callable[[bool], None] = lambda up: None,
        retry_seconds: float = RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._down_message = down_message  # a %s for the reason
        self._up_message = up_message
        self._on_change = on_change
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._state = PerProcess(_State)

    @property
    def down(self) -> bool:
        """Whether the last attempt in this process failed (and none has succeeded since)."""
        return self._state.get().down

    def allow(self) -> bool:
        """Whether to try now: always while up; while down, True for one caller once the retry
        time has come (the others are told no until it has failed or succeeded)."""
        state = self._state.get()
        if not state.down:
            return True
        with state.lock:
            now = self._clock()
            if now < state.retry_at:
                return False
            state.retry_at = now + self._retry_seconds  # the others wait for this caller's try
            return True

    def succeeded(self) -> None:
        """An attempt worked: close the breaker (logged once it has stayed closed for
        ``retry_seconds``)."""
        state = self._state.get()
        if not state.down and not state.reported_down:
            return
        with state.lock:
            now = self._clock()
            if state.down:
                state.down = False
                state.up_since = now
            if not state.reported_down or now - state.up_since < self._retry_seconds:
                return
            state.reported_down = False
        log.info(self._up_message)
        self._on_change(True)

    def failed(self, reason: str) -> None:
        """An attempt failed: don't try again for a while (logged if it was closed)."""
        state = self._state.get()
        with state.lock:
            state.retry_at = self._clock() + self._retry_seconds
            if state.down:
                return
            state.down = True
            if state.reported_down:  # back only for a moment: not news
                return
            state.reported_down = True
        log.warning(self._down_message, reason)
        self._on_change(False)
