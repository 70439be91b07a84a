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
With ``REDIS_URL`` they live in Redis, shared by every instance, and fall back to these when
Redis doesn't answer (:mod:`auth_service.shared.buckets`): :class:`LoginThrottle` decides which
records a login spends, :class:`Buckets` keep and spend them.
"""

from __future__ import annotations

import hashlib
import logging
import math
import struct
import threading
import time
from abc import ABC, abstractmethod
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
class Bucket:
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


# Records by key, and the kind of bucket each is.
Keyed = Sequence[tuple[str, Bucket]]


def _longest_wait(buckets: Sequence[Bucket], tokens: Sequence[float]) -> float | None:
    """Seconds until every bucket has a token; None if they all have one now."""
    waits = [b.wait(t) for b, t in zip(buckets, tokens, strict=True) if t < 1.0]
    return max(waits) if waits else None


class Buckets(ABC):
    """Where the buckets' records are kept and spent, each call in one atomic step: here
    (:class:`LocalBuckets`) or in Redis (:mod:`auth_service.shared.buckets`)."""

    @abstractmethod
    def check(self, buckets: Keyed) -> float | None:
        """Seconds until every one of ``buckets`` has a token; None if they all have one."""

    @abstractmethod
    def take(self, buckets: Keyed) -> float | None:
        """Take one token from each of ``buckets``, or, if one is empty, none: then the wait
        as :meth:`check` gives it."""

    @abstractmethod
    def forgive(self, emptied: Keyed, given_back: Keyed) -> None:
        """Forget the records of ``emptied``; give one token back to each of ``given_back``."""


class LocalBuckets(Buckets):
    """The records in a :class:`BucketStore` of this instance (the uWSGI cache, a dict)."""

    def __init__(self, store: BucketStore, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._clock = clock

    def check(self, buckets: Keyed) -> float | None:
        now = self._clock()
        tokens = [bucket.tokens(self.store.get(key), now) for key, bucket in buckets]
        return _longest_wait([bucket for _, bucket in buckets], tokens)

    def take(self, buckets: Keyed) -> float | None:
        now = self._clock()
        kinds = [bucket for _, bucket in buckets]
        refused: list[float] = []

        def spend(values: list[bytes | None]) -> list[bytes | None]:
            tokens = [
                bucket.tokens(value, now) for bucket, value in zip(kinds, values, strict=True)
            ]
            wait = _longest_wait(kinds, tokens)
            if wait is not None:
                refused.append(wait)
                return values
            return [_STATE.pack(left - 1.0, now) for left in tokens]

        self.store.update([key for key, _ in buckets], spend, [b.ttl for b in kinds])
        return refused[0] if refused else None

    def forgive(self, emptied: Keyed, given_back: Keyed) -> None:
        now = self._clock()
        buckets = [*emptied, *given_back]

        def give_back(values: list[bytes | None]) -> list[bytes | None]:
            return [None] * len(emptied) + [
                bucket.record(bucket.tokens(value, now) + 1.0, now)
                for (_, bucket), value in zip(given_back, values[len(emptied) :], strict=True)
            ]

        self.store.update([key for key, _ in buckets], give_back, [b.ttl for _, b in buckets])


class LoginThrottle:
    """Token buckets of bcrypt checks per (client address, user name) and per address.

    A burst of 0 turns that kind of bucket off; ``address_burst`` is off unless given.
    ``store`` keeps the records: a :class:`BucketStore` of this instance's (spent here, on
    ``clock``), or :class:`Buckets` that spend their own (Redis's, on Redis's clock).
    """

    def __init__(
        self,
        burst: int,
        per_minute: int,
        store: BucketStore | Buckets,
        clock: Callable[[], float] = time.monotonic,
        *,
        address_burst: int = 0,
        address_per_minute: int = 60,
    ) -> None:
        self.burst = burst
        self.address_burst = address_burst
        self._pair = Bucket(burst, per_minute)
        self._address = Bucket(address_burst, address_per_minute)
        self._records = store if isinstance(store, Buckets) else LocalBuckets(store, clock)

    @staticmethod
    def _pair_key(address: str | None, username: str) -> str:
        pair = f"{address or '-'}\0{username}".encode("utf-8", "surrogatepass")
        return hashlib.sha256(pair).hexdigest()[:40]

    @staticmethod
    def _address_key(address: str | None) -> str:
        # Hashed for a key of fixed length (uwsgi.ini's keysize), whatever the address's form.
        digest = hashlib.sha256((address or "-").encode("utf-8", "surrogatepass")).hexdigest()
        return _ADDRESS_KEY_PREFIX + digest[:40]

    def _pair_bucket(self, address: str | None, username: str) -> list[tuple[str, Bucket]]:
        return [(self._pair_key(address, username), self._pair)] if self._pair.burst else []

    def _address_bucket(self, address: str | None) -> list[tuple[str, Bucket]]:
        return [(self._address_key(address), self._address)] if self._address.burst else []

    def _buckets(self, address: str | None, username: str) -> list[tuple[str, Bucket]]:
        """(key, bucket) for each kind that is on."""
        return self._pair_bucket(address, username) + self._address_bucket(address)

    def check(self, address: str | None, username: str) -> None:
        """Raise :class:`Throttled` if the pair's or the address's bucket is empty; costs
        nothing. ``retry_after`` is the longer of the two waits."""
        buckets = self._buckets(address, username)
        wait = self._records.check(buckets) if buckets else None
        if wait is not None:
            raise Throttled(wait)

    def take(self, address: str | None, username: str) -> None:
        """Take one check from both the pair's and the address's bucket in one atomic step, or
        raise :class:`Throttled` and take nothing."""
        buckets = self._buckets(address, username)
        wait = self._records.take(buckets) if buckets else None
        if wait is not None:
            raise Throttled(wait)

    def forgive(self, address: str | None, username: str) -> None:
        """The right password: forget this pair's failures, and give back the one address token
        that its check took (never more, so logging in to an account of one's own does not
        refill an address's bucket for spraying)."""
        emptied, given_back = self._pair_bucket(address, username), self._address_bucket(address)
        if emptied or given_back:
            self._records.forgive(emptied, given_back)
