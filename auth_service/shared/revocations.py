"""Revoked refresh tokens in Redis: what ``auth-service tokens revoke…`` writes when
``REDIS_URL`` is set, and what every instance checks refresh grants against, with
``revocations.json``.

Three keys, the same shape as ``revocations.json``:

- ``auth:revocations:tokens``: a hash of token ID → its expiry (epoch seconds);
- ``auth:revocations:users``: a hash of user name → epoch seconds: that user's refresh tokens
  issued until then are void;
- ``auth:revocations:version``: a counter every write moves on.

Each write is one Lua script (the entry, the pruning of expired IDs, the version: all at once).

Each process keeps a snapshot and reads the version again when the snapshot is more than
``REFRESH_SECONDS`` old: an unchanged list costs one ``GET`` per half second, and a revocation
made anywhere is refused everywhere within a second. When Redis doesn't answer, refresh grants
go on against the last snapshot this process read (counted in
``auth_redis_fallbacks_total{kind="revocations"}``; README "Running more than one instance" says
why they are not refused). A worker uWSGI forks starts from its master's snapshot.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from auth_service.files.revocations import Revocations
from auth_service.forked import PerProcess
from auth_service.records import metrics
from auth_service.shared.connection import LuaScript, RedisConnection, RedisUnavailable

if TYPE_CHECKING:
    import redis

TOKENS_KEY = "auth:revocations:tokens"
USERS_KEY = "auth:revocations:users"
VERSION_KEY = "auth:revocations:version"
REFRESH_SECONDS = 0.5

# A counter that is new (a new Redis, or one that lost its data) starts at the time in
# microseconds, not at 1: it never repeats a version some process read before the loss.
_BUMP_VERSION = """
local function bump_version(key, time)
  if redis.call('INCR', key) == 1 then
    redis.call('SET', key, string.format('%d', tonumber(time[1]) * 1000000 + tonumber(time[2])))
  end
end
"""

# KEYS: tokens, version. ARGV: token ID, its expiry. Expired IDs go in the same step.
_REVOKE_TOKEN = LuaScript(
    _BUMP_VERSION
    + """
local time = redis.call('TIME')
local now = tonumber(time[1])
local expiry = math.max(tonumber(ARGV[2]), tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0)
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', expiry))
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  -- An expiry that isn't a number (no script wrote it) goes too: it can't be kept by date.
  local until_ = tonumber(all[i + 1])
  if until_ == nil or until_ <= now then redis.call('HDEL', KEYS[1], all[i]) end
end
bump_version(KEYS[2], time)
return false
"""
)

# KEYS: users, version. ARGV: user name, the command's own time. The cut-off is the later of
# Redis's clock and the command's, never earlier than one set before; the reply is the cut-off.
_REVOKE_USER = LuaScript(
    _BUMP_VERSION
    + """
local time = redis.call('TIME')
local cutoff = math.max(tonumber(time[1]), tonumber(ARGV[2]),
                        tonumber(redis.call('HGET', KEYS[1], ARGV[1])) or 0)
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d', cutoff))
bump_version(KEYS[2], time)
return string.format('%d', cutoff)
"""
)


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


def _encoded(name: str) -> bytes:
    # Names as users.json may hold them (a lone surrogate included), as the file keeps them.
    return name.encode("utf-8", "surrogatepass")


def _seconds(raw: bytes) -> int | None:
    """An entry's epoch seconds; None for text no script wrote (a hand edit)."""
    try:
        return int(raw)
    except ValueError:
        return None


def _load(client: redis.Redis) -> tuple[bytes | None, Revocations]:
    """The version and the lists, read in one transaction: they match. A token ID is revoked
    whatever its expiry reads; a user's cut-off that isn't a number cuts off nothing."""
    pipe = client.pipeline(transaction=True)
    pipe.get(VERSION_KEY)
    pipe.hgetall(TOKENS_KEY)
    pipe.hgetall(USERS_KEY)
    version, tokens, users = pipe.execute()
    cutoffs = {_name(k): _seconds(v) for k, v in users.items()}
    return version, Revocations(
        {_name(k): _seconds(v) or 0 for k, v in tokens.items()},
        {name: cutoff for name, cutoff in cutoffs.items() if cutoff is not None},
    )


@dataclass(frozen=True)
class _Snapshot:
    version: bytes | None
    revocations: Revocations
    checked_at: float  # on this instance's monotonic clock; -inf: never read


def _merge(first: Revocations, second: Revocations) -> Revocations:
    tokens = dict(first.tokens)
    for token_id, expiry in second.tokens.items():
        tokens[token_id] = max(expiry, tokens.get(token_id, expiry))
    users = dict(first.users)
    for name, cutoff in second.users.items():
        users[name] = max(cutoff, users.get(name, cutoff))
    return Revocations(tokens, users)


class RevocationsInRedis:
    """The revocations in Redis: written by the command line, read through a snapshot."""

    def __init__(
        self,
        connection: RedisConnection,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connection = connection
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        # Plain attributes, not per process: a forked worker starts from its parent's.
        self._snapshot = _Snapshot(None, Revocations(), -math.inf)
        self._merged: tuple[Revocations, Revocations, Revocations] | None = None
        self._refreshing = PerProcess(threading.Lock)

    # --- the command line's writes: once, loudly ---

    def revoke_token(self, token_id: str, expires_at: int) -> None:
        """Revoke one refresh token until ``expires_at``; raises :class:`RedisUnavailable`."""
        self._connection.call(
            lambda client: _REVOKE_TOKEN(
                client, [TOKENS_KEY, VERSION_KEY], [_encoded(token_id), int(expires_at)]
            )
        )

    def revoke_user(self, username: str) -> int:
        """Revoke every refresh token of ``username`` issued until now; the cut-off (epoch
        seconds). Raises :class:`RedisUnavailable`."""
        reply = self._connection.call(
            lambda client: _REVOKE_USER(
                client, [USERS_KEY, VERSION_KEY], [_encoded(username), int(time.time())]
            )
        )
        return int(reply)

    # --- the service's reads ---

    def current(self) -> Revocations:
        """The revocations in Redis as of at most ``REFRESH_SECONDS`` ago, or, while Redis
        doesn't answer, as this process last read them."""
        snapshot = self._snapshot
        if self._clock() - snapshot.checked_at < self._refresh_seconds:
            return snapshot.revocations
        refreshing = self._refreshing.get()
        if not refreshing.acquire(blocking=False):
            return snapshot.revocations  # another thread is reading them: no need to wait
        try:
            return self._refresh().revocations
        finally:
            refreshing.release()

    def _refresh(self) -> _Snapshot:
        old = self._snapshot
        try:
            version = self._connection.run(lambda client: client.get(VERSION_KEY))
            if version is None:  # nothing was ever revoked here (or Redis lost it)
                revocations = Revocations()
            elif version == old.version:
                revocations = old.revocations
            else:
                version, revocations = self._connection.run(_load)
        except RedisUnavailable:
            # Not marked as checked: the next grant asks again, which the breaker makes free.
            metrics.count_redis_fallback("revocations")
            return old
        self._snapshot = _Snapshot(version, revocations, self._clock())
        return self._snapshot

    def merged_with(self, from_file: Revocations) -> Revocations:
        """``revocations.json``'s revocations and Redis's together (made once per change of
        either, not per grant)."""
        from_redis = self.current()
        if not from_redis.tokens and not from_redis.users:
            return from_file
        merged = self._merged
        if merged is None or merged[0] is not from_file or merged[1] is not from_redis:
            merged = self._merged = (from_file, from_redis, _merge(from_file, from_redis))
        return merged[2]
