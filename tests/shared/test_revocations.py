"""Revocations in a real Redis: written by ``auth-service tokens``, refused by every instance
within a second; kept as last seen while Redis is away; a command that can't write fails."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flask import Flask

from auth_service.files.revocations import revoke_token
from auth_service.http import EXTENSION
from auth_service.shared import revocations as redis_revocations

from .. import helpers
from ..cli.test_cli import run
from ..records.test_metrics import value
from ..redis_server import RedisServer
from ..tokens.test_refresh import login_refresh_token, refresh


@pytest.fixture
def shared_config(config_dir: Path, redis_server: RedisServer) -> Path:
    """The test config directory, with REDIS_URL naming the test's Redis."""
    with open(config_dir / "config.py", "a", encoding="utf-8") as config:
        config.write(f"REDIS_URL = {redis_server.url!r}\nREDIS_TIMEOUT_SECONDS = 0.2\n")
    return config_dir


def refused_within(apps: list[Flask], token: str, seconds: float) -> float:
    """Seconds until every app refuses ``token``; fails after ``seconds``."""
    started = time.monotonic()
    clients = [app.test_client() for app in apps]
    while True:
        answers = [refresh(client, token).status_code for client in clients]
        if answers == [401] * len(apps):
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, answers
        time.sleep(0.02)


def test_a_token_revoked_through_the_command_line_is_refused_by_every_instance_in_a_second(
    make_app, shared_config: Path
) -> None:
    instances = [make_app(), make_app()]
    token = login_refresh_token(instances[0].test_client())
    other = login_refresh_token(instances[1].test_client())
    for app in instances:  # both have read the (empty) revocations: the snapshot is fresh
        assert refresh(app.test_client(), token).status_code == 200
    code, output = run(shared_config, "tokens", "revoke", token)
    assert code == 0, output
    assert refused_within(instances, token, 1.0) <= 1.0
    assert not (shared_config / "revocations.json").exists()  # written where they read
    for app in instances:
        assert refresh(app.test_client(), other).status_code == 200


def test_every_token_of_a_user_revoked_through_the_command_line(
    make_app, shared_config: Path
) -> None:
    instances = [make_app(), make_app()]
    token = login_refresh_token(instances[0].test_client())
    bobs = login_refresh_token(instances[0].test_client(), "bob")
    code, output = run(shared_config, "tokens", "revoke-user", "alice")
    assert code == 0 and "alice" in output, output
    refused_within(instances, token, 1.0)
    assert refresh(instances[1].test_client(), bobs).status_code == 200
    # A later login gets a token that works again.
    time.sleep(1.05)  # issued in a later second than the cut-off
    fresh = login_refresh_token(instances[1].test_client())
    assert refresh(instances[0].test_client(), fresh).status_code == 200


def test_while_redis_is_away_the_last_revocations_seen_still_apply(
    make_app, shared_config: Path, redis_server: RedisServer
) -> None:
    app = make_app()
    client = app.test_client()
    revoked, good = login_refresh_token(client), login_refresh_token(client)
    assert run(shared_config, "tokens", "revoke", revoked)[0] == 0
    refused_within([app], revoked, 1.0)
    before = value("auth_redis_fallbacks_total", kind="revocations")
    redis_server.stop()
    time.sleep(redis_revocations.REFRESH_SECONDS)  # the snapshot is due for a look
    started = time.monotonic()
    assert refresh(client, revoked).status_code == 401
    assert refresh(client, good).status_code == 200  # refresh grants keep working
    assert time.monotonic() - started < 0.2 + 0.5
    assert value("auth_redis_fallbacks_total", kind="revocations") > before
    # A worker uWSGI forks (or respawns) meanwhile starts from its parent's snapshot.
    status = helpers.in_forked_child(lambda: str(refresh(client, revoked).status_code).encode())
    assert status == b"401"


def test_revocations_json_still_applies_with_redis(make_app, shared_config: Path) -> None:
    """An older revocation in the file keeps working beside Redis's."""
    app = make_app()
    client = app.test_client()
    in_file, in_redis = login_refresh_token(client), login_refresh_token(client)
    assert run(shared_config, "tokens", "revoke", in_redis)[0] == 0
    claims = app.extensions[EXTENSION].refresh.read(in_file)
    revoke_token(shared_config / "revocations.json", claims.token_id, claims.expires_at)
    app.extensions[EXTENSION].revocations.check_at_next_call()
    refused_within([app], in_file, 1.0)
    refused_within([app], in_redis, 1.0)


def test_the_command_fails_in_one_line_when_redis_is_unreachable(
    shared_config: Path, redis_server: RedisServer
) -> None:
    redis_server.stop()
    code, output = run(shared_config, "tokens", "revoke", "some-token-id")
    assert code == 1
    assert output.count("\n") == 1 and output.startswith("Error: not revoked: Redis at unix://")
    assert not (shared_config / "revocations.json").exists()  # it never pretends elsewhere
    code, output = run(shared_config, "tokens", "revoke-user", "alice")
    assert code == 1 and output.startswith("Error: not revoked:"), output


def test_a_redis_that_lost_its_data_is_read_afresh(
    make_app, shared_config: Path, redis_server: RedisServer
) -> None:
    """A restarted Redis without persistence starts its version afresh: a process never takes
    the new list for the one it read before (the same count of writes since)."""
    app = make_app()
    client = app.test_client()
    first, second = login_refresh_token(client), login_refresh_token(client)
    assert run(shared_config, "tokens", "revoke", first)[0] == 0
    refused_within([app], first, 1.0)
    redis_server.stop()
    redis_server.start()  # empty
    assert run(shared_config, "tokens", "revoke", second)[0] == 0
    refused_within([app], second, 1.0)
    assert refresh(client, first).status_code == 200  # lost with Redis's data
