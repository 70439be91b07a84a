"""GET /health and /metrics with REDIS_URL: Redis lost is "degraded" (200, tokens still
issued), never "failing"; back to "ok" once it answers; never longer than the timeout."""

from __future__ import annotations

import json
import time

from auth_service.shared import breaker

from .. import helpers
from ..records.test_metrics import samples
from ..redis_server import RedisServer
from .test_health import health

TIMEOUT = 0.2
PASSWORD = "s3cret-redis-pw"


def redis_app(make_app, server: RedisServer):
    # Over TCP, with a password Redis asks for: nothing the service shows may hold it.
    url = f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"
    server.client().config_set("requirepass", PASSWORD)
    return make_app(REDIS_URL=url, REDIS_TIMEOUT_SECONDS=TIMEOUT)


def redis_up(client) -> float | None:
    text = client.get("/metrics").get_data(as_text=True)
    return samples(text).get(("auth_redis_up", ()))


def test_with_redis_health_checks_it(make_app, redis_server: RedisServer) -> None:
    client = redis_app(make_app, redis_server).test_client()
    status, body = health(client)
    assert (status, body["status"]) == (200, "ok")
    assert body["checks"] == {
        "config_loaded": True,
        "key_usable": True,
        "last_reload_ok": True,
        "redis_reachable": True,
    }
    assert redis_up(client) == 1


def test_redis_lost_is_degraded_not_failing_and_back_to_ok(
    make_app, redis_server: RedisServer
) -> None:
    client = redis_app(make_app, redis_server).test_client()
    assert health(client)[1]["status"] == "ok"
    redis_server.stop()
    status, body = health(client)
    assert (status, body["status"]) == (200, "degraded")
    assert body["checks"]["redis_reachable"] is False
    assert [p for p in body["problems"] if "Redis" in p] == [
        "Redis (REDIS_URL) is unreachable: login throttling uses this instance's own buckets "
        "and refresh grants the last revocations it saw"
    ]
    assert PASSWORD not in json.dumps(body) and "127.0.0.1" not in json.dumps(body)
    assert redis_up(client) == 0
    # Tokens are still issued, logins included.
    token = client.get(
        f"/v2/token?service={helpers.SERVICE}&scope=repository:team/app:pull",
        headers=helpers.basic("alice", helpers.PASSWORDS["alice"]),
    )
    assert token.status_code == 200

    redis_server.start()
    redis_server.client().config_set("requirepass", PASSWORD)
    time.sleep(breaker.RETRY_SECONDS)
    status, body = health(client)
    assert (status, body["status"]) == (200, "ok"), body
    assert redis_up(client) == 1


def test_a_cut_off_redis_holds_health_no_longer_than_the_timeout(
    make_app, redis_server: RedisServer
) -> None:
    client = redis_app(make_app, redis_server).test_client()
    assert health(client)[1]["status"] == "ok"
    redis_server.pause()
    started = time.monotonic()
    assert health(client)[1]["status"] == "degraded"
    assert time.monotonic() - started < TIMEOUT + 0.3
    started = time.monotonic()
    assert health(client)[1]["status"] == "degraded"  # the breaker: not tried again yet
    assert time.monotonic() - started < 0.1


def test_a_failing_check_beside_redis_is_still_failing(
    make_app, redis_server: RedisServer, signing_cert
) -> None:
    app = redis_app(make_app, redis_server)
    redis_server.stop()
    app.extensions["auth_service"].signer._clock = lambda: (
        signing_cert.not_valid_after_utc.timestamp() + 1
    )
    status, body = health(app.test_client())
    assert (status, body["status"]) == (503, "failing")
