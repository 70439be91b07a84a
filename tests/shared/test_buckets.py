"""The login throttle's buckets in a real Redis, shared by instances: failures counted across
them, no update lost, Redis's clock, records that expire; and the fallback to each instance's
own buckets when Redis is stopped or cut off, and back.

(The throttle's semantics on Redis, the same as on local records, are tests/passwords/
test_throttle.py, run on both.)
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from auth_service.passwords.throttle import LocalBuckets, LocalStore, LoginThrottle, Throttled
from auth_service.shared import breaker
from auth_service.shared.buckets import KEY_PREFIX, FallbackBuckets, RedisBuckets
from auth_service.shared.connection import RedisConnection

from ..records.test_metrics import value
from ..redis_server import RedisServer

TIMEOUT = 0.2


def instance(
    server: RedisServer,
    burst: int = 10,
    per_minute: int = 6,
    address_burst: int = 0,
    retry_seconds: float | None = None,
) -> tuple[LoginThrottle, RedisConnection]:
    """One instance's throttle, as the app factory builds it with REDIS_URL: a connection of
    its own, Redis's buckets, and its own local ones to fall back on."""
    connection = RedisConnection(server.url, TIMEOUT, retry_seconds=retry_seconds)
    buckets = FallbackBuckets(RedisBuckets(connection), LocalBuckets(LocalStore()))
    throttle = LoginThrottle(burst, per_minute, buckets, address_burst=address_burst)
    return throttle, connection


def fail(throttle: LoginThrottle, address: str, username: str) -> None:
    """A wrong password, as the login path spends it: check, then take."""
    throttle.check(address, username)
    throttle.take(address, username)


def fallbacks() -> float:
    return value("auth_redis_fallbacks_total", kind="throttle")


def test_failures_through_two_instances_count_in_one_bucket(redis_server: RedisServer) -> None:
    first, _ = instance(redis_server, burst=10)
    second, _ = instance(redis_server, burst=10)
    for n in range(10):  # spread over both, as a load balancer would
        fail(first if n % 2 else second, "203.0.113.7", "alice")
    for throttle in (first, second):
        with pytest.raises(Throttled):
            throttle.check("203.0.113.7", "alice")
    # Another address, and the right password forgiving through either instance.
    first.check("203.0.113.8", "alice")
    second.forgive("203.0.113.7", "alice")
    first.check("203.0.113.7", "alice")


def test_concurrent_takes_through_two_instances_lose_no_update(redis_server: RedisServer) -> None:
    """Threads of two instances spending one bucket at once get exactly its burst."""
    burst, threads, attempts = 25, 16, 10
    throttles = [instance(redis_server, burst=burst, per_minute=1)[0] for _ in range(2)]
    start = threading.Barrier(threads)
    granted = []
    lock = threading.Lock()

    def spend(throttle: LoginThrottle) -> None:
        start.wait()
        for _ in range(attempts):
            try:
                throttle.take("198.51.100.1", "bob")
            except Throttled:
                continue
            with lock:
                granted.append(1)

    workers = [threading.Thread(target=spend, args=(throttles[n % 2],)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(granted) == burst  # one a minute refills nothing in the test's second


def test_the_buckets_run_on_redis_clock_and_expire(redis_server: RedisServer) -> None:
    throttle, _ = instance(redis_server, burst=3, per_minute=6, address_burst=100)
    throttle.take("192.0.2.1", "carol")
    client = redis_server.client()
    seconds, micros = client.time()
    keys = sorted(client.keys(KEY_PREFIX + "*"))
    assert len(keys) == 2  # the pair's and the address's record
    for key in keys:
        left, at = client.get(key).split()
        # Counted at Redis's time: the same for every instance, whatever its own clock says.
        assert abs(float(at) - (seconds + micros / 1e6)) < 1.0
        # Kept for the bucket's refill time: 3 at 6 a minute is 30 s; 100 at 60 is 100 s.
        expected = 100 if key.startswith(f"{KEY_PREFIX}addr:".encode()) else 30
        assert expected - 2 <= client.ttl(key) <= expected
    assert sorted(float(client.get(k).split()[0]) for k in keys) == [2.0, 99.0]


def test_a_stopped_redis_falls_back_to_the_instance_buckets_counted_and_logged_once(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    throttle, _ = instance(redis_server, burst=3)
    before = fallbacks()
    redis_server.stop()
    with caplog.at_level(logging.INFO, logger=breaker.__name__):
        for _ in range(3):
            started = time.monotonic()
            fail(throttle, "192.0.2.9", "dave")  # the instance's own bucket: three
            assert time.monotonic() - started < TIMEOUT + 0.3
        with pytest.raises(Throttled):
            throttle.check("192.0.2.9", "dave")
    assert fallbacks() - before == 7  # three checks, three takes, the refused check
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "unreachable" in warnings[0].getMessage()
    assert "falls back" in warnings[0].getMessage()


def test_a_cut_off_redis_costs_one_timeout_a_second_not_one_per_login(
    redis_server: RedisServer,
) -> None:
    """A Redis that accepts connections and never answers: the first login waits the timeout,
    the next ones don't wait at all until the second is over."""
    throttle, connection = instance(redis_server, burst=1000)
    throttle.take("192.0.2.10", "erin")  # connected, and answered
    redis_server.pause()
    started = time.monotonic()
    throttle.take("192.0.2.10", "erin")
    first = time.monotonic() - started
    assert TIMEOUT * 0.9 <= first < TIMEOUT + 0.3
    started = time.monotonic()
    for _ in range(50):
        throttle.check("192.0.2.10", "erin")
        throttle.take("192.0.2.10", "erin")
    assert time.monotonic() - started < 0.2
    assert connection.breaker.down
    time.sleep(breaker.RETRY_SECONDS)
    started = time.monotonic()
    throttle.take("192.0.2.10", "erin")  # one try again, one timeout again
    assert TIMEOUT * 0.9 <= time.monotonic() - started < TIMEOUT + 0.3


def test_the_instance_uses_redis_again_once_it_answers(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    throttle, connection = instance(redis_server, burst=5, retry_seconds=0.2)
    redis_server.stop()
    with caplog.at_level(logging.INFO, logger=breaker.__name__):
        fail(throttle, "192.0.2.11", "frank")
        assert connection.breaker.down
        redis_server.start()  # back, empty
        time.sleep(0.25)
        before = fallbacks()
        for _ in range(3):
            fail(throttle, "192.0.2.11", "frank")
        time.sleep(0.2)  # back is logged once Redis has answered for the retry time
        throttle.check("192.0.2.11", "frank")
    assert fallbacks() == before
    assert not connection.breaker.down
    assert len(redis_server.client().keys(KEY_PREFIX + "*")) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages  # down once, back once
    assert "answers again" in messages[1]
