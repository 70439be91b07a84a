"""Throttling, parallel logins and the audit log through the real nginx and uWSGI (2 workers).

nginx passes the client's address to the service; connecting from 127.0.0.2 makes a second
client on one machine.
"""

from __future__ import annotations

import base64
import http.client
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from auth_service.stack.main import Stack

from .conftest import SERVICE, USERS, basic_auth, password

GUESSER = "127.0.0.2"
BURST = 10  # LOGIN_THROTTLE_BURST's default


def _get(stack: Stack, query: str, headers: dict[str, str], source: str = "127.0.0.1") -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, 30, (source, 0))
    try:
        connection.request("GET", f"/v2/token?service={SERVICE}&{query}", headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_a_guesser_is_throttled_across_workers_and_the_owner_is_not(stack: Stack) -> None:
    scope = "scope=repository:team/app:pull"

    def guess(n: int) -> Any:
        return _get(stack, scope, basic_auth("carol", f"guess-{n}"), source=GUESSER)

    # In parallel, so both workers take guesses: each worker counting alone would allow more.
    # Two at a time: no more than the service's places for bcrypt (2 running + 1 waiting), so
    # none is refused with 503 and each guess is either checked or throttled.
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(guess, range(2 * BURST)))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [401] * BURST + [429] * BURST
    throttled = next(a for a in answers if a[0] == 429)
    assert int(throttled[1]["Retry-After"]) >= 1
    assert json.loads(throttled[2])["errors"][0]["code"] == "TOOMANYREQUESTS"

    # The right password from the guessing address is held too; from elsewhere it just works.
    assert _get(stack, scope, basic_auth("carol"), source=GUESSER)[0] == 429
    assert _get(stack, scope, basic_auth("carol"))[0] == 200


def test_32_parallel_logins_with_the_right_password_all_succeed(stack: Stack) -> None:
    """What `docker compose pull` of many images does at once."""

    def login(n: int) -> int:
        return _get(stack, f"scope=repository:team/app{n}:pull", basic_auth("reader"))[0]

    with ThreadPoolExecutor(32) as pool:
        assert list(pool.map(login, range(32))) == [200] * 32


def _audit_lines(stack: Stack) -> list[dict[str, Any]]:
    lines = stack.log_path("uwsgi").read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith('{"time"')]


def test_the_audit_log_finds_a_denied_push_and_holds_no_secret(stack: Stack) -> None:
    status, _, body = _get(
        stack, "scope=repository:team/denied:pull,push&client_id=e2e-audit", basic_auth("reader")
    )
    assert status == 200
    token = json.loads(body)["token"]
    _get(stack, "scope=repository:team/denied:pull", basic_auth("reader", "not-" + "it"))

    lines = _audit_lines(stack)
    denied = [line for line in lines if line["client_id"] == "e2e-audit"]
    assert len(denied) == 1
    assert denied[0]["user"] == "reader" and denied[0]["client"] == "127.0.0.1"
    assert denied[0]["scopes"] == ["repository:team/denied:pull,push"]
    assert denied[0]["access"] == ["repository:team/denied:pull"]
    assert any(line["outcome"] == "bad_credentials" and line["user"] == "reader" for line in lines)

    log = stack.log_path("uwsgi").read_text(errors="replace")
    nginx_logs = "".join(p.read_text(errors="replace") for p in stack.state_dir.rglob("*.log"))
    secrets = [pw for pw, _ in USERS.values()] + ["not-it", token, password("reader")]
    secrets += [basic_auth(user)["Authorization"].split()[1] for user in USERS]
    for secret in secrets:
        assert secret not in log and secret not in nginx_logs
        assert base64.b64encode(secret.encode()).decode() not in log
