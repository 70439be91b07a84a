"""The connection to Redis: a client per process, one short timeout and no retries, a breaker
that allows one try a second, and no password in anything it shows."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from auth_service.shared import breaker
from auth_service.shared.connection import RedisConnection, RedisUnavailable, shown_url

from .. import helpers
from ..redis_server import RedisServer


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@redis.internal:6379/0", "redis://:***@redis.internal:6379/0"),
        ("rediss://auth:p%40ss@redis.internal/2", "rediss://auth:***@redis.internal/2"),
        ("unix:///run/redis/redis.sock?db=1&password=s3cret", "unix:///run/redis/redis.sock"),
        ("unix:///run/redis/redis.sock", "unix:///run/redis/redis.sock"),
        ("redis://redis.internal:6379", "redis://redis.internal:6379"),
    ],
)
def test_a_shown_url_has_no_password(url: str, shown: str) -> None:
    assert shown_url(url).startswith(shown)
    assert "s3cret" not in shown_url(url) and "p%40ss" not in shown_url(url)


def test_a_forked_worker_makes_a_client_of_its_own(redis_server: RedisServer) -> None:
    """uWSGI forks its workers from the master: sharing the master's sockets would mix two
    processes' replies."""
    connection = RedisConnection(redis_server.url, 1.0)
    parent = connection.client()
    assert connection.run(lambda client: client.ping())

    def in_child() -> bytes:
        child = connection.client()
        answered = connection.run(lambda client: client.ping())
        return b"own client, answered" if child is not parent and answered else b"shared"

    assert helpers.in_forked_child(in_child) == b"own client, answered"
    assert connection.client() is parent


def test_a_failure_is_not_retried_and_waits_one_timeout(redis_server: RedisServer) -> None:
    """redis-py retries three times by default: four timeouts. Here: one."""
    connection = RedisConnection(redis_server.url, 0.3)
    connection.run(lambda client: client.ping())
    redis_server.pause()
    started = time.monotonic()
    with pytest.raises(RedisUnavailable):
        connection.call(lambda client: client.ping())
    assert 0.27 <= time.monotonic() - started < 0.5


def test_while_open_the_breaker_lets_one_thread_try_and_the_others_go_on(
    redis_server: RedisServer,
) -> None:
    connection = RedisConnection(redis_server.url, 0.3, retry_seconds=0.2)
    redis_server.stop()
    with pytest.raises(RedisUnavailable):
        connection.run(lambda client: client.ping())
    redis_server.start()
    redis_server.pause()  # cut off: whoever tries waits the whole timeout
    time.sleep(0.25)
    tried, lock = [], threading.Lock()
    start = threading.Barrier(8)
    elapsed: list[float] = []

    def attempt() -> None:
        start.wait()
        began = time.monotonic()

        def ping(client):
            with lock:
                tried.append(1)
            return client.ping()

        try:
            connection.run(ping)
        except RedisUnavailable:
            elapsed.append(time.monotonic() - began)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(tried) == 1
    assert len(elapsed) == 8  # every one fell back
    assert sorted(elapsed)[-2] < 0.1  # all but the one that tried were answered at once


def test_the_logs_never_show_the_password(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A user name with a percent escape: the log line must show it as it is, not fail on it.
    url = f"redis://ops%40team:s3cret@127.0.0.1:{redis_server.port}/0"
    redis_server.stop()
    connection = RedisConnection(url, 0.2)
    with (
        caplog.at_level(logging.INFO, logger=breaker.__name__),
        pytest.raises(RedisUnavailable) as failed,
    ):
        connection.run(lambda client: client.ping())
    assert "s3cret" not in str(failed.value)
    assert caplog.records and "s3cret" not in caplog.text
    assert "redis://ops%40team:***@127.0.0.1" in caplog.messages[0]
