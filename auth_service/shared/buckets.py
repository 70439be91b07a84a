"""The login throttle's buckets in Redis, shared by every instance, and their fallback.

:class:`RedisBuckets` does what :class:`auth_service.passwords.throttle.LocalBuckets` does, with
the same arithmetic, but each check, take or forgive is one Lua script: Redis runs a script
alone, so two instances spending the same bucket at once can't both read "one left" (no
read-modify-write from Python, no lost update). The scripts read Redis's clock (``TIME``), so
instances whose clocks disagree still refill the buckets alike. Each record is kept for its
bucket's refill time (``EX``), after which it would mean a full bucket anyway: Redis never fills
up with stale records.

A record is the text ``"<tokens left> <when, in seconds>"`` under ``auth:throttle:<key>``, the
key :class:`~auth_service.passwords.throttle.LoginThrottle` made (a digest: no address or user
name is stored).

:class:`FallbackBuckets` puts the two together: Redis's buckets while it answers, this
instance's own (the uWSGI cache) when it doesn't, each fallback counted in
``auth_redis_fallbacks_total{kind="throttle"}``. During an outage each instance counts on its
own, as it did before Redis; the records it keeps then are not copied to Redis afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

from auth_service.passwords.throttle import Buckets, Keyed
from auth_service.records import metrics
from auth_service.shared.connection import LuaScript, RedisConnection, RedisUnavailable

KEY_PREFIX = "auth:throttle:"

# Shared by the three scripts. ARGV[1] is the time to count at, in seconds, or "" for Redis's
# own clock; ARGV[2] how many of the first KEYS are emptied (forgive only); then three ARGV per
# key: its bucket's burst, refill rate per second, and record lifetime in seconds.
_COMMON = """
local function now_from(given)
  if given ~= '' then return tonumber(given) end
  local time = redis.call('TIME')
  return tonumber(time[1]) + tonumber(time[2]) / 1000000
end
local function bucket(i)
  local at = 2 + 3 * (i - 1)
  return tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3])
end
local function tokens_of(key, burst, rate, now)
  -- pcall: a key of another type (no script wrote it) is no record, and SET replaces it.
  local record = redis.pcall('GET', key)
  if type(record) ~= 'string' then return burst end
  local left, at = string.match(record, '^(%S+) (%S+)$')
  left, at = tonumber(left), tonumber(at)
  -- Text no script wrote: NaN, infinities. What a script writes is within 0..burst, and past.
  if left == nil or at == nil or left ~= left or at ~= at or math.abs(at) == math.huge then
    return burst
  end
  left, at = math.max(0, left), math.min(at, now)
  return math.min(burst, left + (now - at) * rate)
end
local function save(key, tokens, now, ttl)
  redis.call('SET', key, string.format('%.17g %.17g', tokens, now), 'EX', ttl)
end
local function longest_wait(tokens)
  local wait = nil
  for i = 1, #KEYS do
    if tokens[i] < 1 then
      local _, rate = bucket(i)
      local this = (1 - tokens[i]) / rate
      if wait == nil or this > wait then wait = this end
    end
  end
  return wait
end
local function all_tokens(now)
  local tokens = {}
  for i = 1, #KEYS do
    local burst, rate = bucket(i)
    tokens[i] = tokens_of(KEYS[i], burst, rate, now)
  end
  return tokens
end
"""

# Replies are text: Redis would cut a Lua number down to an integer.
_CHECK = LuaScript(
    _COMMON
    + """
local wait = longest_wait(all_tokens(now_from(ARGV[1])))
if wait == nil then return false end
return string.format('%.17g', wait)
"""
)

_TAKE = LuaScript(
    _COMMON
    + """
local now = now_from(ARGV[1])
local tokens = all_tokens(now)
local wait = longest_wait(tokens)
if wait ~= nil then return string.format('%.17g', wait) end
for i = 1, #KEYS do
  local _, _, ttl = bucket(i)
  save(KEYS[i], tokens[i] - 1, now, ttl)
end
return false
"""
)

_FORGIVE = LuaScript(
    _COMMON
    + """
local now = now_from(ARGV[1])
local emptied = tonumber(ARGV[2])
for i = 1, #KEYS do
  if i <= emptied then
    redis.call('DEL', KEYS[i])
  else
    local burst, rate, ttl = bucket(i)
    local tokens = math.min(burst, tokens_of(KEYS[i], burst, rate, now) + 1)
    if tokens >= burst then redis.call('DEL', KEYS[i]) else save(KEYS[i], tokens, now, ttl) end
  end
end
return false
"""
)


class RedisBuckets(Buckets):
    """The buckets' records in Redis. ``clock`` (tests only) replaces Redis's own clock."""

    def __init__(
        self, connection: RedisConnection, clock: Callable[[], float] | None = None
    ) -> None:
        self._connection = connection
        self._clock = clock

    def _run(self, script: LuaScript, buckets: Keyed, emptied: int = 0) -> float | None:
        keys = [KEY_PREFIX + key for key, _ in buckets]
        args: list[str | int | float] = ["" if self._clock is None else repr(self._clock())]
        args.append(emptied)
        for _, bucket in buckets:
            args += [bucket.burst, repr(bucket.rate), bucket.ttl]
        reply = self._connection.run(lambda client: script(client, keys, args))
        return None if reply is None else float(reply)

    def check(self, buckets: Keyed) -> float | None:
        return self._run(_CHECK, buckets)

    def take(self, buckets: Keyed) -> float | None:
        return self._run(_TAKE, buckets)

    def forgive(self, emptied: Keyed, given_back: Keyed) -> None:
        self._run(_FORGIVE, [*emptied, *given_back], emptied=len(emptied))


class FallbackBuckets(Buckets):
    """``shared`` while it answers; ``local`` for each operation it doesn't (counted)."""

    def __init__(self, shared: RedisBuckets, local: Buckets) -> None:
        self.shared = shared
        self.local = local

    def check(self, buckets: Keyed) -> float | None:
        try:
            return self.shared.check(buckets)
        except RedisUnavailable:
            metrics.count_redis_fallback("throttle")
            return self.local.check(buckets)

    def take(self, buckets: Keyed) -> float | None:
        try:
            return self.shared.take(buckets)
        except RedisUnavailable:
            metrics.count_redis_fallback("throttle")
            return self.local.take(buckets)

    def forgive(self, emptied: Keyed, given_back: Keyed) -> None:
        try:
            self.shared.forgive(emptied, given_back)
        except RedisUnavailable:
            metrics.count_redis_fallback("throttle")
            self.local.forgive(emptied, given_back)
