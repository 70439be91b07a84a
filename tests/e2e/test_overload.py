"""Logins beyond what the cores can check: they wait for a bcrypt turn, up to
BCRYPT_WAIT_SECONDS, and only those that could not start in that time are refused, 503 once.

The stack has one bcrypt turn in all (BCRYPT_CONCURRENCY 1) and a hash that takes about a second
to check, so of six simultaneous logins by six users the second waits about a second and gets
its token, while the last ones can't start within the wait.
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

from auth_service.stack.main import Stack
from benchmarks import wrk

from .conftest import SERVICE, http, running_stack

SLOW_COST = 14  # about a second a check here
PASSWORD = "slow-e2e-pw"
LOGINS = 6
WAIT_SECONDS = 3


@pytest.fixture(scope="module")
def slow_stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pass_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(SLOW_COST)).decode()
    users = {
        f"slow-{n}": {"pass_hash": pass_hash, "repositories": {"*": ["pull"]}}
        for n in range(LOGINS)
    }
    env = {
        "AUTH_SERVICE_BCRYPT_WAIT_SECONDS": str(WAIT_SECONDS),
        "AUTH_SERVICE_BCRYPT_CONCURRENCY": "1",
    }
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
    """The audit lines by user, once every user's is there: a worker writes its line before the
    answer leaves, but uWSGI's master copies it into the log file a moment later."""
    deadline = time.monotonic() + 5
    while not all((audit := _audit_by_user(log))[user] for user in users):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return audit


def test_logins_wait_for_a_turn_and_only_those_that_cannot_start_in_time_are_refused(
    slow_stack: Stack,
) -> None:
    users = [f"slow-{n}" for n in range(LOGINS)]
    with ThreadPoolExecutor(LOGINS) as pool:
        answers = dict(zip(users, pool.map(lambda u: _login(slow_stack, u), users), strict=True))

    statuses = [status for status, _, _ in answers.values()]
    # One turn, a check a second, a wait of three: more than one login gets through (the
    # second one waited), and not all six (the wait is bounded).
    assert 2 <= statuses.count(200) < LOGINS, statuses
    assert set(statuses) == {200, 503}, statuses
    audit = _audit_when_written(slow_stack.log_path("uwsgi"), users)
    for user, (status, headers, body) in answers.items():
        outcomes = [(line["outcome"], line["status"]) for line in audit[user]]
        # Asked once, answered once: nothing in between tries it again.
        assert outcomes == [("issued" if status == 200 else "overloaded", status)], outcomes
        if status == 503:
            assert headers["Retry-After"] == "1"
            assert json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"


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
