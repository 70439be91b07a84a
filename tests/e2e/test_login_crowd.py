"""Logins in a crowd, through nginx and uWSGI as shipped: a burst of first logins is answered,
not refused, and one client address can't make another's login wait behind its flood.

Counts and order come from the audit log, never from timings.
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from auth_service.stack.main import Stack

from .conftest import SERVICE, running_stack

CROWD = 32
CROWD_COST = 10  # the measure: about 60 ms a check here
FLOOD = 24
FLOOD_COST = 12  # four times as slow: the flood queues far longer than one check
PASSWORD = "crowd-e2e-pw"


@pytest.fixture(scope="module")
def crowd_stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    crowd_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(CROWD_COST)).decode()
    flood_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(FLOOD_COST)).decode()
    users = {f"crowd-{n}": {"pass_hash": crowd_hash} for n in range(CROWD)}
    users |= {f"flood-{n}": {"pass_hash": flood_hash} for n in range(FLOOD)}
    users["late"] = {"pass_hash": flood_hash}
    # The credential cache off: every login here is a first login.
    env = {"AUTH_SERVICE_CREDENTIAL_CACHE_SECONDS": "0"}
    with running_stack(tmp_path_factory.mktemp("crowd"), env=env, users=users) as stack:
        yield stack


def login(stack: Stack, user: str, source: str = "127.0.0.1") -> tuple[int, bytes]:
    """One token request for ``user`` with the right password from the address ``source``."""
    return login_with(stack, user, PASSWORD, source)


def login_with(stack: Stack, user: str, password: str, source: str) -> tuple[int, bytes]:
    """One token request for ``user`` and ``password`` from the loopback address ``source``."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", stack.port, timeout=60, source_address=(source, 0)
    )
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        connection.request(
            "GET",
            f"/v2/token?service={SERVICE}&scope=repository:team/app:pull",
            headers={"Authorization": f"Basic {basic}"},
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def audit_lines(stack: Stack, users: set[str], timeout: float = 10) -> list[dict[str, Any]]:
    """The audit lines of ``users`` in the order they were written, once all are there (uWSGI's
    master copies a worker's line into the log a moment after the answer leaves)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [
            json.loads(line)
            for line in Path(stack.log_path("uwsgi")).read_text(errors="replace").splitlines()
            if line.startswith('{"time"')
        ]
        mine = [line for line in lines if line["user"] in users]
        if {line["user"] for line in mine} >= users or time.monotonic() > deadline:
            return mine
        time.sleep(0.05)


def test_a_burst_of_first_logins_of_distinct_users_is_answered_not_refused(
    crowd_stack: Stack,
) -> None:
    users = [f"crowd-{n}" for n in range(CROWD)]
    gate = threading.Barrier(CROWD)

    def together(user: str) -> tuple[int, bytes]:
        gate.wait(10)
        return login(crowd_stack, user)

    with ThreadPoolExecutor(CROWD) as pool:
        answers = list(pool.map(together, users))
    assert [status for status, _ in answers] == [200] * CROWD, answers
    lines = audit_lines(crowd_stack, set(users))
    assert sorted(line["user"] for line in lines) == sorted(users)  # each asked and issued once
    assert {line["outcome"] for line in lines} == {"issued"}


def test_a_login_from_another_address_is_answered_before_most_of_a_flood_queued_ahead(
    crowd_stack: Stack,
) -> None:
    flood = [f"flood-{n}" for n in range(FLOOD)]
    with ThreadPoolExecutor(FLOOD + 1) as pool:
        flooding = [pool.submit(login, crowd_stack, user, "127.0.0.2") for user in flood]
        time.sleep(0.3)  # the flood is queued by now: two turns, a quarter second a check
        late = pool.submit(login, crowd_stack, "late", "127.0.0.3")
        assert late.result(60)[0] == 200
        assert [future.result(60)[0] for future in flooding] == [200] * FLOOD
    order = [line["user"] for line in audit_lines(crowd_stack, {*flood, "late"})]
    assert len(order) == FLOOD + 1
    # Turns by address: the late login waits for a few checks, not for most of the flood.
    assert order.index("late") < FLOOD // 2, order


SPRAY_BURST = 5


@pytest.fixture(scope="module")
def spray_stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    crowd_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(CROWD_COST)).decode()
    users = {name: {"pass_hash": crowd_hash} for name in ("victim", "sprayer", "bystander")}
    env = {"AUTH_SERVICE_LOGIN_THROTTLE_ADDRESS_BURST": str(SPRAY_BURST)}
    with running_stack(tmp_path_factory.mktemp("spray"), env=env, users=users) as stack:
        yield stack


def test_a_password_sprayer_is_throttled_by_address_while_others_log_in(spray_stack: Stack) -> None:
    """One password against many names: each name is new to its pair's bucket, but the
    address's bucket runs dry after its burst, for every name, the sprayer's own account too."""
    sprayed = [f"sprayed-{n}" for n in range(4 * SPRAY_BURST)] + ["victim"]
    answers = [login_with(spray_stack, name, "Winter2026!", "127.0.0.4")[0] for name in sprayed]
    assert answers == [401] * SPRAY_BURST + [429] * (len(sprayed) - SPRAY_BURST)
    assert login_with(spray_stack, "sprayer", PASSWORD, "127.0.0.4")[0] == 429
    # Another address is unaffected, and so is the victim from there.
    assert login_with(spray_stack, "bystander", PASSWORD, "127.0.0.5")[0] == 200
    assert login_with(spray_stack, "victim", PASSWORD, "127.0.0.5")[0] == 200
    lines = audit_lines(spray_stack, set(sprayed))
    outcomes = [line["outcome"] for line in lines if line["client"] == "127.0.0.4"]
    assert outcomes.count("bad_credentials") == SPRAY_BURST  # the bcrypt checks it was given
    assert outcomes.count("throttled") == len(sprayed) - SPRAY_BURST
