"""A worker never answers from configuration older than what is on disk, even one uWSGI has just
respawned from its master's start-up copy: an old password or a voided refresh token gets no
token, and a user added after start-up is known to every worker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from auth_service.stack.main import Stack

from .. import helpers
from .conftest import SERVICE, USERS, basic_auth, http, running_stack, wait_for_reload

NEW_PASSWORD = "alice-new-e2e-pw"
NEWCOMER_PASSWORD = "newcomer-e2e-pw"
HAMMER_THREADS = 12
HAMMER_SECONDS = 3.0
KILLS = 3
FILLER_USERS = 5000


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Throttling off: the old password must meet the password check every time, not a 429.
    env = {
        "AUTH_SERVICE_LOGIN_THROTTLE_BURST": "0",
        "AUTH_SERVICE_LOGIN_THROTTLE_ADDRESS_BURST": "0",
    }
    users = {
        name: {"pass_hash": helpers.hash_password(pw), **entry}
        for name, (pw, entry) in USERS.items()
    }
    # A directory of some size, as in production: reloading it takes a while, and a worker must
    # not answer from its old copy meanwhile.
    filler = helpers.hash_password("filler")
    users |= {f"filler-{n}": {"pass_hash": filler, "repositories": {f"filler-{n}/*": ["pull"]}}
              for n in range(FILLER_USERS)}  # fmt: skip
    with running_stack(tmp_path_factory.mktemp("fresh-config"), env=env, users=users) as stack:
        yield stack


def cli(stack: Stack, *args: str, stdin: str = "") -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from auth_service.cli.main import main; main()", *args],
        env={"AUTH_SERVICE_CONFIG_DIR": str(stack.config_dir), "PATH": "/usr/bin:/bin"},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def workers(stack: Stack) -> list[int]:
    """The PIDs of uWSGI's workers: the master's children."""
    master = stack.processes["uwsgi"].pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def push_token_status(stack: Stack, user: str, password: str) -> int:
    url = f"{stack.realm}?service={SERVICE}&scope=repository:{user}/app:pull,push"
    return http("GET", url, basic_auth(user, password))[0]


def refresh_status(stack: Stack, refresh_token: str) -> int:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "service": SERVICE,
            "scope": "repository:alice/app:pull,push"}  # fmt: skip
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return http("POST", stack.realm, headers, urllib.parse.urlencode(form).encode())[0]


def hammer(stack: Stack, attempts, seconds: float) -> Counter:
    """Run each attempt (a name and a function giving a status) from many threads, over and
    over, for ``seconds``; count the statuses by attempt."""
    deadline = time.monotonic() + seconds
    names = list(attempts)

    def loop(n: int) -> Counter:
        seen: Counter = Counter()
        while time.monotonic() < deadline:
            name = names[n % len(names)]
            seen[(name, attempts[name]())] += 1
            n += 1
        return seen

    with ThreadPoolExecutor(HAMMER_THREADS) as pool:
        return sum(pool.map(loop, range(HAMMER_THREADS)), Counter())


def test_after_a_password_change_a_respawned_worker_accepts_neither_old_password_nor_token(
    own_stack: Stack,
) -> None:
    old_password = basic_auth("alice")["Authorization"]  # what a client still sends
    status, _, body = http(
        "GET", f"{own_stack.realm}?service={SERVICE}&offline_token=true", basic_auth("alice")
    )
    assert status == 200
    refresh_token = json.loads(body)["refresh_token"]
    assert refresh_status(own_stack, refresh_token) == 200

    cli(own_stack, "users", "passwd", "alice", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    cli(own_stack, "users", "add", "newcomer", "--grant", "newcomer/*=pull,push",
        "--password-stdin", stdin=NEWCOMER_PASSWORD + "\n")  # fmt: skip
    wait_for_reload(2.0)
    assert old_password != basic_auth("alice", NEW_PASSWORD)["Authorization"]
    assert push_token_status(own_stack, "alice", "alice-e2e-pw") == 401

    attempts = {
        "old password": lambda: push_token_status(own_stack, "alice", "alice-e2e-pw"),
        "old refresh token": lambda: refresh_status(own_stack, refresh_token),
        "new password": lambda: push_token_status(own_stack, "alice", NEW_PASSWORD),
        "newcomer": lambda: push_token_status(own_stack, "newcomer", NEWCOMER_PASSWORD),
    }
    seen: Counter = Counter()
    for _ in range(KILLS):
        before = set(workers(own_stack))
        os.kill(sorted(before)[0], signal.SIGKILL)  # as an OOM kill or harakiri does
        seen += hammer(own_stack, attempts, HAMMER_SECONDS)
        assert set(workers(own_stack)) != before  # uWSGI respawned it meanwhile
    assert seen[("old password", 200)] == 0, seen
    assert seen[("old refresh token", 200)] == 0, seen
    # Everything else is answered from the new file: the new password and the new user work.
    assert {status for name, status in seen if name in ("new password", "newcomer")} == {200}


def test_users_added_a_moment_ago_are_known_to_every_thread_at_once(own_stack: Stack) -> None:
    """32 simultaneous first logins of users added 1.5 s earlier: whichever thread reloads the
    file, the others wait for it rather than answer from the copy without them."""
    users_path = own_stack.config_dir / "users.json"
    document = json.loads(users_path.read_text())
    pass_hash = helpers.hash_password(NEWCOMER_PASSWORD)
    added = [f"added-{n}" for n in range(32)]
    document |= {name: {"pass_hash": pass_hash} for name in added}
    helpers.write_json(users_path, document)
    wait_for_reload(1.5)
    with ThreadPoolExecutor(len(added)) as pool:
        statuses = list(
            pool.map(lambda u: push_token_status(own_stack, u, NEWCOMER_PASSWORD), added)
        )
    assert statuses == [200] * len(added)
