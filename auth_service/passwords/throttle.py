"""Throttling of failed logins, per client address and user name and per address, shared by all
workers.

Two token buckets of bcrypt checks stand before every check:

- one per (address, user name): ``LOGIN_THROTTLE_BURST`` checks, refilled at
  ``LOGIN_THROTTLE_PER_MINUTE``. It holds a guesser of one user's password to the refill rate.
  The same user from another address has another bucket: it slows a guesser and never locks the
  owner out.
- one per address, across all user names: ``LOGIN_THROTTLE_ADDRESS_BURST`` checks, refilled at
  ``LOGIN_THROTTLE_ADDRESS_PER_MINUTE``. It holds a sprayer (one password against many names,
  each with a full bucket of its own) to that rate: after the burst, at most the rate in bcrypt
  checks.

A check takes one token from both. The right password empties the pair's record and gives back
the one address token its check took, but no more: correct logins cost an address nothing, so
an office behind one NAT address is only throttled by its failures, and a sprayer who owns one
valid account cannot refill his address's bucket by logging in with it. Once either bucket is
empty the login is answered 429 with ``Retry-After`` before any work, even with the right
password (otherwise a 200 would confirm a guess without costing a check).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from auth_service.errors import Throttled  # raised here; its answer is errors.THROTTLED

log = logging.getLogger(__name__)

CACHE_NAME = "auth_throttle"
_STATE = struct.Struct("<dd")  # tokens left, when counted (monotonic seconds)
LOCAL_MAX_ENTRIES = 65536
# Address records' keys: the prefix keeps them apart from the pairs' keys (bare hex digits).
_ADDRESS_KEY_PREFIX = "addr:"

# The values of some keys -> their new values (None deletes), in one atomic step.
Change = Callable[[list[bytes | None]], list[bytes | None]]


class BucketStore(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def update(self, keys: Sequence[str], change: Change, ttls: Sequence[int]) -> None:
        """Replace the values of ``keys`` with ``change(their values)`` atomically, each kept
        ``ttls[i]`` seconds; a None value deletes its key."""


class LocalStore:
    """One process's buckets: tests, and a service run without uWSGI."""

    def __init__(self, max_entries: int = LOCAL_MAX_ENTRIES) -> None:
        self._values: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries

    def get(self, key: str) -> bytes | None:
        return self._values.get(key)

    def update(self, keys: Sequence[str], change: Change, ttls: Sequence[int]) -> None:
        with self._lock:
            values = change([self._values.get(key) for key in keys])
            for key, value in zip(keys, values, strict=True):
                if value is None:
                    self._values.pop(key, None)
                    continue
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

    def update(self, keys: Sequence[str], change: Change, ttls: Sequence[int]) -> None:
        self._uwsgi.lock()  # read-modify-write of both records across processes
        try:
            values = change([self._uwsgi.cache_get(key, self._cache) for key in keys])
            for key, value, ttl in zip(keys, values, ttls, strict=True):
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


@dataclass(frozen=True)
class _Bucket:
    """One kind of bucket: its size and refill rate; a missing record is a full bucket."""

    burst: int
    per_minute: int

    @property
    def rate(self) -> float:
        return self.per_minute / 60.0

    @property
    def ttl(self) -> int:
        """A record older than this has refilled completely and means nothing."""
        return max(1, math.ceil(self.burst / self.rate))

    def tokens(self, value: bytes | None, now: float) -> float:
        if value is None:
            return float(self.burst)
        tokens, then = _STATE.unpack(value)
        return min(float(self.burst), tokens + max(0.0, now - then) * self.rate)

    def wait(self, tokens: float) -> float:
        """Seconds until a bucket holding ``tokens`` has one."""
        return (1.0 - tokens) / self.rate

    def record(self, tokens: float, now: float) -> bytes | None:
        return None if tokens >= self.burst else _STATE.pack(tokens, now)


class LoginThrottle:
    """Token buckets of bcrypt checks per (client address, user name) and per address.

    A burst of 0 turns that kind of bucket off; ``address_burst`` is off unless given.
    """

    def __init__(
        self,
        burst: int,
        per_minute: int,
        store: BucketStore,
        clock: Callable[[], float] = time.monotonic,
        *,
        address_burst: int = 0,
        address_per_minute: int = 60,
    ) -> None:
        self.burst = burst
        self.address_burst = address_burst
        self._pair = _Bucket(burst, per_minute)
        self._address = _Bucket(address_burst, address_per_minute)
        self._store = store
        self._clock = clock

    @staticmethod
    def _pair_key(address: str | None, username: str) -> str:
        pair = f"{address or '-'}\0{username}".encode("utf-8", "surrogatepass")
        return hashlib.sha256(pair).hexdigest()[:40]

    @staticmethod
    def _address_key(address: str | None) -> str:
        # Hashed for a key of fixed length (uwsgi.ini's keysize), whatever the address's form.
        digest = hashlib.sha256((address or "-").encode("utf-8", "surrogatepass")).hexdigest()
        return _ADDRESS_KEY_PREFIX + digest[:40]

    def _buckets(self, address: str | None, username: str) -> list[tuple[str, _Bucket]]:
        """(key, bucket) for each kind that is on."""
        buckets = []
        if self._pair.burst:
            buckets.append((self._pair_key(address, username), self._pair))
        if self._address.burst:
            buckets.append((self._address_key(address), self._address))
        return buckets

    @staticmethod
    def _longest_wait(buckets: Sequence[_Bucket], tokens: Sequence[float]) -> float | None:
        """Seconds until every bucket has a token; None if they all have one now."""
        waits = [b.wait(t) for b, t in zip(buckets, tokens, strict=True) if t < 1.0]
        return max(waits) if waits else None

    def check(self, address: str | None, username: str) -> None:
        """Raise :class:`Throttled` if the pair's or the address's bucket is empty; costs
        nothing. ``retry_after`` is the longer of the two waits."""
        now = self._clock()
        buckets = self._buckets(address, username)
        tokens = [bucket.tokens(self._store.get(key), now) for key, bucket in buckets]
        wait = self._longest_wait([bucket for _, bucket in buckets], tokens)
        if wait is not None:
            raise Throttled(wait)

    def take(self, address: str | None, username: str) -> None:
        """Take one check from both the pair's and the address's bucket in one atomic step, or
        raise :class:`Throttled` and take nothing."""
        buckets = self._buckets(address, username)
        if not buckets:
            return
        now = self._clock()
        kinds = [bucket for _, bucket in buckets]
        refused: list[float] = []

        def spend(values: list[bytes | None]) -> list[bytes | None]:
            tokens = [
                bucket.tokens(value, now) for bucket, value in zip(kinds, values, strict=True)
            ]
            wait = self._longest_wait(kinds, tokens)
            if wait is not None:
                refused.append(wait)
                return values
            return [_STATE.pack(left - 1.0, now) for left in tokens]

        self._store.update([key for key, _ in buckets], spend, [b.ttl for b in kinds])
        if refused:
            raise Throttled(refused[0])

    def forgive(self, address: str | None, username: str) -> None:
        """The right password: forget this pair's failures, and give back the one address token
        that its check took (never more, so logging in to an account of one's own does not
        refill an address's bucket for spraying)."""
        buckets = self._buckets(address, username)
        if not buckets:
            return
        now = self._clock()
        pair_key = self._pair_key(address, username)

        def give_back(values: list[bytes | None]) -> list[bytes | None]:
            return [
                None if key == pair_key else bucket.record(bucket.tokens(value, now) + 1.0, now)
                for (key, bucket), value in zip(buckets, values, strict=True)
            ]

        self._store.update([key for key, _ in buckets], give_back, [b.ttl for _, b in buckets])
