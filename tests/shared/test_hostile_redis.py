"""A Redis that holds what no instance wrote: records of the wrong type, text that isn't a
number, numbers out of range. Whoever wrote them, a login or a refresh grant is never answered
500 for it, the throttle still refuses, and a revocation can still be written."""

from __future__ import annotations

import logging
import time

import pytest

from auth_service.errors import ConfigError
from auth_service.http import EXTENSION
from auth_service.passwords.throttle import LocalBuckets, LocalStore, LoginThrottle, Throttled
from auth_service.shared import breaker
from auth_service.shared.buckets import KEY_PREFIX, FallbackBuckets, RedisBuckets
from auth_service.shared.connection import RedisConnection, RedisUnavailable
from auth_service.shared.revocations import TOKENS_KEY, USERS_KEY, RevocationsInRedis

from ..files.test_redis_settings import settings_with
from ..redis_server import RedisServer
from ..tokens.test_refresh import login_refresh_token, refresh
from .test_revocations import refused_within

ADDRESS, USER = "203.0.113.50", "mallory"


def redis_only(server: RedisServer, burst: int = 5) -> LoginThrottle:
    """A throttle on Redis's buckets with no fallback: a failing script raises."""
    connection = RedisConnection(server.url, 0.5)
    return LoginThrottle(burst, 6, RedisBuckets(connection), address_burst=50)


def poisoned_keys(server: RedisServer, throttle: LoginThrottle) -> list[bytes]:
    """The keys of the pair's and the address's records, made by one failed login."""
    throttle.take(ADDRESS, USER)
    keys = server.client().keys(KEY_PREFIX + "*")
    assert len(keys) == 2
    return keys


@pytest.mark.parametrize(
    "record", [b"-inf 0", b"-1e308 1e308", b"-5 1e300", b"0 1e300", b"nan nan", b"inf -inf"]
)
def test_a_record_out_of_range_still_throttles_without_error(
    redis_server: RedisServer, record: bytes
) -> None:
    throttle = redis_only(redis_server)
    client = redis_server.client()
    for key in poisoned_keys(redis_server, throttle):
        client.set(key, record)  # no expiry, as a hand-written record would have
    for _ in range(6):  # never more than a full bucket, never an error
        try:
            throttle.take(ADDRESS, USER)
        except Throttled as refused:
            # At most the time a bucket takes to refill one token (6 a minute: 10 s).
            assert 1 <= refused.retry_after <= 10
            break
    else:
        pytest.fail("six failures allowed with a burst of five")


def test_a_record_of_the_wrong_type_is_a_full_bucket_and_replaced(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    throttle = redis_only(redis_server)
    client = redis_server.client()
    for key in poisoned_keys(redis_server, throttle):
        client.delete(key)
        client.rpush(key, "not a record")
    with caplog.at_level(logging.WARNING, logger=breaker.__name__):
        for _ in range(5):
            throttle.check(ADDRESS, USER)
            throttle.take(ADDRESS, USER)
        with pytest.raises(Throttled):
            throttle.check(ADDRESS, USER)
    assert caplog.records == []  # Redis answered: nothing fell back
    assert all(client.type(key) == b"string" for key in client.keys(KEY_PREFIX + "*"))


def test_unreadable_revocations_neither_fail_a_grant_nor_stop_a_revocation(
    make_app, redis_server: RedisServer
) -> None:
    app = make_app(REDIS_URL=redis_server.url, REDIS_TIMEOUT_SECONDS=0.2)
    client = app.test_client()
    alices, bobs = login_refresh_token(client), login_refresh_token(client, "bob")
    shared = RevocationsInRedis(RedisConnection(redis_server.url, 0.5))
    shared.revoke_user("carol")  # the version exists
    redis = redis_server.client()
    redis.hset(TOKENS_KEY, "written-by-hand", "soon")
    redis.hset(USERS_KEY, "bob", "yesterday")
    redis.incr("auth:revocations:version")
    assert refresh(client, alices).status_code == 200
    assert refresh(client, bobs).status_code == 200  # a cut-off that isn't one revokes nothing
    # A revocation is still written, and the entry no instance can read is pruned with it.
    claims = app.extensions[EXTENSION].refresh.read(alices)
    shared.revoke_token(claims.token_id, claims.expires_at)
    assert redis.hexists(TOKENS_KEY, claims.token_id)
    assert not redis.hexists(TOKENS_KEY, "written-by-hand")
    shared.revoke_user("bob")
    refused_within([app], alices, 1.0)
    refused_within([app], bobs, 1.0)


def test_a_redis_that_refuses_writes_is_logged_down_once_not_twice_a_second(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Out of memory (or a read-only replica), Redis still answers a check and refuses the take
    that follows: one warning for the whole time, and one line once it takes writes again."""
    connection = RedisConnection(redis_server.url, 0.5, retry_seconds=0.1)
    local = LocalBuckets(LocalStore())
    throttle = LoginThrottle(1000, 6, FallbackBuckets(RedisBuckets(connection), local))
    redis = redis_server.client()
    redis.config_set("maxmemory-policy", "noeviction")
    redis.config_set("maxmemory", 1)
    with caplog.at_level(logging.INFO, logger=breaker.__name__):
        until = time.monotonic() + 1.0  # ten tries of the breaker's, each a check and a take
        while time.monotonic() < until:
            throttle.check(ADDRESS, USER)
            throttle.take(ADDRESS, USER)
            time.sleep(0.01)
        assert len(caplog.records) == 1 and "unreachable" in caplog.messages[0], caplog.messages
        redis.config_set("maxmemory", 0)
        until = time.monotonic() + 0.5
        while time.monotonic() < until:
            throttle.take(ADDRESS, USER)
            time.sleep(0.01)
    assert len(caplog.records) == 2 and "answers again" in caplog.messages[1], caplog.messages
    assert not connection.breaker.down


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret@redis.internal/0?colour=blue",  # redis-py: a TypeError per connection
        "redis://:s3cret@redis.internal/0?protocol=9",
        "rediss://:s3cret@redis.internal/0?ssl_cert_reqs=maybe",
        "redis://:s3cret@redis.internal/0/1",  # redis-py would quietly read database 1
        "redis://:s3cret@redis.internal/first",
    ],
)
def test_a_redis_url_that_could_never_connect_stops_start_up(config_dir, url: str) -> None:
    with pytest.raises(ConfigError) as refused:
        settings_with(config_dir, REDIS_URL=url)
    assert refused.value.source == "environment AUTH_SERVICE_REDIS_URL"
    assert "s3cret" not in str(refused.value) and "\n" not in str(refused.value)


def test_the_url_cannot_lengthen_the_timeout(redis_server: RedisServer) -> None:
    url = f"{redis_server.tcp_url}?socket_timeout=5&socket_connect_timeout=5"
    connection = RedisConnection(url, 0.2)
    connection.run(lambda client: client.ping())
    redis_server.pause()
    started = time.monotonic()
    with pytest.raises(RedisUnavailable):
        connection.run(lambda client: client.ping())
    assert time.monotonic() - started < 0.5
