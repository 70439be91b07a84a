"""Logins beyond the service's bcrypt places: a worker refuses them 503 at once, and nginx holds
each and tries it once more (nginx/registry.conf.template, token_retry) before answering.

The stack has one bcrypt place in all (BCRYPT_CONCURRENCY 1, BCRYPT_QUEUE 0) and a hash that
takes about a second to check, so six simultaneous logins by six users overflow it for far
longer than nginx holds a refused request.
"""

from __future__ import annotations

import base64
import json
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from auth_service.stack import Stack
from benchmarks import wrk

from .conftest import SERVICE, http, running_stack

SLOW_COST = 14  # about a second a check here
PASSWORD = "slow-e2e-pw"
LOGINS = 6


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pass_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(SLOW_COST)).decode()
    users = {
        f"slow-{n}": {"pass_hash": pass_hash, "repositories": {"*": ["pull"]}}
        for n in range(LOGINS)
    }
    env = {"AUTH_SERVICE_BCRYPT_QUEUE": "0", "AUTH_SERVICE_BCRYPT_CONCURRENCY": "1"}
    with running_stack(tmp_path_factory.mktemp("overload"), env=env, users=users) as stack:
        yield stack


def _login(stack: Stack, user: str) -> tuple[int, dict[str, str], bytes]:
    basic = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    url = f"{stack.realm}?service={SERVICE}&scope=repository:team/app:pull"
    return http("GET", url, {"Authorization": f"Basic {basic}"})


def _audit_by_user(log: Path) -> dict[str, list[dict[str, Any]]]:
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith('{"time"'):
            record = json.loads(line)
            by_user[record["user"]].append(record)
    return by_user


def _audit_when_written(log: Path, users: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The audit lines by user, once every answered try is there: a worker writes its line
    before the answer leaves, but uWSGI's master copies it into the log file a moment later."""

    def complete(lines: list[dict[str, Any]]) -> bool:
        return bool(lines) and (lines[0]["outcome"] != "overloaded" or len(lines) >= 2)

    deadline = time.monotonic() + 5
    while not all(complete((audit := _audit_by_user(log))[user]) for user in users):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return audit


def test_a_refused_login_is_tried_once_more_by_nginx(slow_stack: Stack) -> None:
    users = [f"slow-{n}" for n in range(LOGINS)]
    with ThreadPoolExecutor(LOGINS) as pool:
        answers = dict(zip(users, pool.map(lambda u: _login(slow_stack, u), users), strict=True))

    statuses = sorted(status for status, _, _ in answers.values())
    assert set(statuses) == {200, 503}, statuses
    audit = _audit_when_written(slow_stack.log_path("uwsgi"), users)
    retried = 0
    for user, (status, headers, body) in answers.items():
        outcomes = [(line["outcome"], line["status"]) for line in audit[user]]
        if outcomes[0] == ("overloaded", 503):
            # Refused at once, then one more try: the client gets the second answer, whatever.
            retried += 1
            assert len(outcomes) == 2, (user, outcomes)
            assert outcomes[1][1] == status
        else:
            assert outcomes == [("issued", 200)], (user, outcomes)
            assert status == 200
        if status == 503:
            # The service's own answer, passed on: its JSON error and Retry-After.
            assert headers["Retry-After"] == "1"
            assert json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
    assert retried >= LOGINS - 1  # one place in all


BURST_CONNECTIONS = 256  # wrk's connections, each asking again as soon as it is answered


def test_a_burst_of_requests_waits_in_uwsgis_listen_queue_not_502(stack: Stack) -> None:
    """nginx connects to uWSGI once per request. With uWSGI's default listen queue (100) the
    connections beyond it were refused, and nginx answered most of a 256-connection burst 502."""
    url = f"{stack.realm}?service={SERVICE}&scope=repository:public/app:pull"
    result = wrk.run(wrk.command(url, BURST_CONNECTIONS, 2, []), 2)
    assert result.requests > BURST_CONNECTIONS
    assert (result.non_2xx, result.socket_errors) == (0, 0), _token_statuses(stack)


def _token_statuses(stack: Stack) -> dict[str, int]:
    """How nginx answered token requests, from its access log: what the failures were."""
    statuses: dict[str, int] = defaultdict(int)
    for line in (stack.state_dir / "nginx-access.log").read_text(errors="replace").splitlines():
        if "/v2/token" in line:
            statuses[line.split('" ', 1)[1].split()[0]] += 1
    return dict(statuses)
