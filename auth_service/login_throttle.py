"""Throttling of failed logins, per client address and user name, shared by all workers.

Each (address, user) pair has a bucket of ``LOGIN_THROTTLE_BURST`` bcrypt checks, refilled at
``LOGIN_THROTTLE_PER_MINUTE``. A check takes one; a successful login empties the record. Once
the bucket is empty the pair is answered 429 with ``Retry-After`` before any work, even with the
right password (otherwise a 200 would confirm a guess without costing a check), so a guesser is
held to the refill rate. The same user from another address has another bucket: throttling
slows a guesser and never locks the owner out.

The buckets must be shared by every worker of an instance, or each worker would allow its own
burst. Under uWSGI they live in the uWSGI cache ``auth_throttle`` that ``uwsgi.ini`` declares
(shared memory, updated under uWSGI's lock); anywhere else in a dictionary of this process.
"""

from __future__ import annotations

import hashlib
import logging
import math
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

CACHE_NAME = "auth_throttle"
_STATE = struct.Struct("<dd")  # tokens left, when counted (monotonic seconds)
LOCAL_MAX_ENTRIES = 65536

Change = Callable[[bytes | None], bytes | None]


class Throttled(Exception):
    """Too many failed logins from this address for this user: retry after ``retry_after``."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many failed logins: try again later")
        self.retry_after = max(1, math.ceil(retry_after))


class BucketStore(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def update(self, key: str, change: Change, ttl: int) -> None:
        """Replace the value with ``change(value)`` atomically; None deletes it."""


class LocalStore:
    """One process's buckets: tests, and a service run without uWSGI."""

    def __init__(self, max_entries: int = LOCAL_MAX_ENTRIES) -> None:
        self._values: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries

    def get(self, key: str) -> bytes | None:
        return self._values.get(key)

    def update(self, key: str, change: Change, ttl: int) -> None:
        with self._lock:
            value = change(self._values.get(key))
            if value is None:
                self._values.pop(key, None)
                return
            self._values[key] = value
            self._values.move_to_end(key)
            while len(self._values) > self._max_entries:
                self._values.popitem(last=False)


class UwsgiCacheStore:
    """Buckets in a uWSGI cache: shared memory that every worker of the instance sees."""

    def __init__(self, uwsgi: Any, cache: str = CACHE_NAME) -> None:
        self._uwsgi = uwsgi
        self._cache = cache

    def get(self, key: str) -> bytes | None:
        return self._uwsgi.cache_get(key, self._cache)

    def update(self, key: str, change: Change, ttl: int) -> None:
        self._uwsgi.lock()  # read-modify-write across processes
        try:
            value = change(self._uwsgi.cache_get(key, self._cache))
            if value is None:
                self._uwsgi.cache_del(key, self._cache)
            else:
                self._uwsgi.cache_update(key, value, ttl, self._cache)
        finally:
            self._uwsgi.unlock()


def _declared_caches(uwsgi: Any) -> str:
    declared = uwsgi.opt.get("cache2", b"")
    if not isinstance(declared, list):
        declared = [declared]
    return " ".join(v.decode() if isinstance(v, bytes) else str(v) for v in declared)


def shared_store() -> BucketStore:
    """The uWSGI cache when running under uWSGI with ``auth_throttle`` declared, else local."""
    try:
        import uwsgi  # type: ignore[import-not-found]  # exists only inside uWSGI
    except ImportError:
        return LocalStore()
    if f"name={CACHE_NAME}" in _declared_caches(uwsgi):
        return UwsgiCacheStore(uwsgi)
    log.warning(
        "uwsgi.ini declares no cache %r: failed logins are counted per worker process",
        CACHE_NAME,
    )
    return LocalStore()


class LoginThrottle:
    """Token buckets of bcrypt checks per (client address, user name)."""

    def __init__(
        self,
        burst: int,
        per_minute: int,
        store: BucketStore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst  # 0: throttling is off
        self.rate = per_minute / 60.0
        self._store = store
        self._clock = clock
        # A record older than this has refilled completely and means nothing.
        self._ttl = max(1, math.ceil(burst / self.rate)) if burst else 1

    @staticmethod
    def _key(address: str | None, username: str) -> str:
        pair = f"{address or '-'}\0{username}".encode("utf-8", "surrogatepass")
        return hashlib.sha256(pair).hexdigest()[:40]

    def _tokens(self, value: bytes | None, now: float) -> float:
        if value is None:
            return float(self.burst)
        tokens, then = _STATE.unpack(value)
        return min(float(self.burst), tokens + max(0.0, now - then) * self.rate)

    def _wait(self, tokens: float) -> float:
        return (1.0 - tokens) / self.rate

    def check(self, address: str | None, username: str) -> None:
        """Raise :class:`Throttled` if this pair has no check left; costs no token."""
        if not self.burst:
            return
        tokens = self._tokens(self._store.get(self._key(address, username)), self._clock())
        if tokens < 1.0:
            raise Throttled(self._wait(tokens))

    def take(self, address: str | None, username: str) -> None:
        """Take one check from the pair's bucket, or raise :class:`Throttled`."""
        if not self.burst:
            return
        now = self._clock()
        left: list[float] = []

        def spend(value: bytes | None) -> bytes | None:
            tokens = self._tokens(value, now)
            left.append(tokens)
            return _STATE.pack(tokens - 1.0, now) if tokens >= 1.0 else value

        self._store.update(self._key(address, username), spend, self._ttl)
        if left[0] < 1.0:
            raise Throttled(self._wait(left[0]))

    def forgive(self, address: str | None, username: str) -> None:
        """The right password: forget this pair's failures."""
        if self.burst:
            self._store.update(self._key(address, username), lambda value: None, self._ttl)
