"""The audit log: one JSON line per token request, and never a secret in it."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from auth_service.records.audit import AuditLog, AuditUnavailable, _write_all
from auth_service.records.json_text import escape_invisible

from .. import helpers

SERVICE = helpers.SERVICE


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_line_per_request_with_who_what_and_the_outcome(
    make_app: Any, tmp_path: Path, signing_cert: Any
) -> None:
    log = tmp_path / "audit.log"
    client = make_app(AUDIT_LOG=str(log)).test_client()
    address = {"REMOTE_ADDR": "203.0.113.9"}
    ok = client.get(
        f"/v2/token?service={SERVICE}&scope=repository:team/app:pull,push"
        "&scope=repository:other/x:push&client_id=docker",
        headers=helpers.basic("bob", "bob-pw"),
        environ_base=address,
    )
    assert ok.status_code == 200
    client.get(f"/v2/token?service={SERVICE}", headers=helpers.basic("bob", "nope"))
    client.get(f"/v2/token?service={SERVICE}&scope=bad")
    client.get(f"/v2/token?service={SERVICE}&scope=repository:public-image:pull")

    issued, refused, bad, anonymous = _lines(log)
    claims = helpers.verify_token(ok.get_json()["token"], signing_cert)
    assert issued["client"] == "203.0.113.9"
    assert issued["client_id"] == "docker"
    assert issued["user"] == "bob" and issued["service"] == SERVICE
    assert issued["scopes"] == ["repository:team/app:pull,push", "repository:other/x:push"]
    # The denied push is there to be found: asked for, and not in the access granted.
    assert issued["access"] == ["repository:team/app:pull"]
    assert issued["outcome"] == "issued" and issued["status"] == 200
    assert issued["jti"] == claims["jti"]
    assert issued["latency_ms"] >= 0 and issued["time"].endswith("Z")
    assert (refused["outcome"], refused["status"], refused["user"]) == (
        "bad_credentials",
        401,
        "bob",
    )
    assert (bad["outcome"], bad["status"]) == ("bad_request", 400)
    assert (anonymous["user"], anonymous["grant_type"]) == (None, "anonymous")
    assert anonymous["access"] == ["repository:public-image:pull"]


def test_no_password_token_or_authorization_header_ever(make_app: Any, tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    client = make_app(AUDIT_LOG=str(log)).test_client()
    secrets: list[str] = ["alice-pw", "wrong-secret-pw", "form-secret-pw"]
    header = helpers.basic("alice", "alice-pw")
    secrets.append(header["Authorization"].split()[1])
    login = client.get(
        f"/v2/token?service={SERVICE}&scope=repository:team/app:push&offline_token=true",
        headers=header,
    )
    secrets += [login.get_json()["token"], login.get_json()["refresh_token"]]
    client.get(f"/v2/token?service={SERVICE}", headers=helpers.basic("alice", "wrong-secret-pw"))
    form = {"grant_type": "password", "username": "alice", "password": "form-secret-pw"}
    client.post("/v2/token", data={**form, "service": SERVICE})
    refreshed = client.post(
        "/v2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": login.get_json()["refresh_token"],
            "service": SERVICE,
            "scope": "repository:team/app:pull",
        },
    )
    secrets.append(refreshed.get_json()["access_token"])
    text = log.read_text()
    assert len(text.splitlines()) == 4
    for secret in secrets:
        assert secret not in text
        assert base64.b64encode(secret.encode()).decode() not in text
    assert "Authorization" not in text and "Basic " not in text


def test_off_writes_nothing(make_app: Any, tmp_path: Path, capfd: Any) -> None:
    client = make_app(AUDIT_LOG="").test_client()
    client.get(f"/v2/token?service={SERVICE}&scope=repository:public-image:pull")
    assert '"event":"token"' not in capfd.readouterr().err


def test_a_rotated_file_is_reopened(make_app: Any, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr("auth_service.records.audit.REOPEN_CHECK_SECONDS", 0)
    log = tmp_path / "audit.log"
    client = make_app(AUDIT_LOG=str(log)).test_client()
    query = f"/v2/token?service={SERVICE}&scope=repository:public-image:pull"
    client.get(query)
    log.rename(tmp_path / "audit.log.1")
    client.get(query)
    assert len(_lines(log)) == 1
    assert len(_lines(tmp_path / "audit.log.1")) == 1


def _full_pipe() -> tuple[int, int]:
    """A pipe with no room left, its write end non-blocking: uWSGI's log socket in a burst."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    with contextlib.suppress(BlockingIOError):
        while True:
            os.write(write_end, b"." * 4096)
    return read_end, write_end


def _drain_later(read_end: int, seconds: float, into: bytearray) -> threading.Thread:
    def drain() -> None:
        time.sleep(seconds)
        while chunk := os.read(read_end, 65536):
            into.extend(chunk)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("size", [200, 100_000])  # one atomic write; then many partial ones
def test_a_line_waits_for_room_and_arrives_whole(size: int) -> None:
    read_end, write_end = _full_pipe()
    received = bytearray()
    drainer = _drain_later(read_end, 0.2, received)
    line = b"{" + b"x" * (size - 3) + b"}\n"
    started = time.monotonic()
    try:
        _write_all(write_end, line)
        waited = time.monotonic() - started
    finally:
        os.close(write_end)  # the drainer's end of file
    drainer.join()
    assert waited >= 0.15  # it did wait for room
    os.close(read_end)
    assert received.lstrip(b".") == line


def test_a_line_with_no_room_for_too_long_raises(monkeypatch: Any) -> None:
    monkeypatch.setattr("auth_service.records.audit.WRITE_WAIT_SECONDS", 0.2)
    read_end, write_end = _full_pipe()
    try:
        with pytest.raises(AuditUnavailable):
            _write_all(write_end, b'{"event":"token"}\n')
    finally:
        os.close(write_end)
        os.close(read_end)


def test_no_token_leaves_without_its_audit_line(make_app: Any, monkeypatch: Any) -> None:
    def stuck(self: AuditLog, record: dict[str, Any]) -> None:
        raise AuditUnavailable("the audit log took no line for 5s")

    monkeypatch.setattr(AuditLog, "write", stuck)
    client = make_app().test_client()
    answer = client.get(f"/v2/token?service={SERVICE}&scope=repository:public-image:pull")
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert "token" not in answer.get_json()
    assert answer.get_json()["errors"][0]["code"] == "UNAVAILABLE"


# What a client may put in a user name, a scope or a client_id to forge or hide a log line: C0 and
# C1 controls (ESC sequences, U+0085 NEXT LINE, CSI), DEL, Unicode's line and paragraph
# separators, the characters str.splitlines() also splits at (\v \f \x1c-\x1e), a quote that
# would close the JSON string, bidirectional overrides and invisible format characters (a
# non-BMP one too).
FORGERY = (
    'x\x1b[31mred\x1b[0m\r\n{"event":"token","user":"admin"}\x85\u2028\u2029\x0b\x0c'
    '\x1c\x1d\x1e\x7f\x9b2J\u202eevil\u200b\ufeff\U000e0001"end'
)
# Characters that stay as they are: names are often not ASCII.
READABLE = "Zoë Łukasz Алиса 李雷 😀"
# Every character str.splitlines() splits at, and the C1 range, none of which may be left raw.
LINE_BREAKERS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
RAW_FORBIDDEN = set(LINE_BREAKERS) | {chr(c) for c in range(0x7F, 0xA0)} | {"\x1b", "\u202e"}


def test_escaped_json_is_the_same_value_on_one_line() -> None:
    record = {"user": FORGERY + READABLE, "scopes": [FORGERY], "lone": "\udc80"}
    text = escape_invisible(json.dumps(record, ensure_ascii=False))
    assert len(text.splitlines()) == 1
    assert not RAW_FORBIDDEN & set(text)
    assert "\U000e0001" not in text and "\\udb40\\udc01" in text  # a surrogate pair
    assert READABLE in text
    assert json.loads(text) == record


def test_plain_ascii_lines_are_left_alone() -> None:
    text = json.dumps({"user": "alice", "scopes": ["repository:team/app:pull"]})
    assert escape_invisible(text) is text


def test_a_client_cannot_split_or_forge_an_audit_line(make_app: Any, tmp_path: Path) -> None:
    """User name (Basic and form), scope and client_id carry the forgery; each request is still
    one line that parses, under any line splitter, and gives back exactly what was sent."""
    log = tmp_path / "audit.log"
    client = make_app(AUDIT_LOG=str(log)).test_client()
    name = FORGERY.replace(":", "") + READABLE  # Basic ends a user name at its first colon
    query = urllib.parse.urlencode(
        {"service": SERVICE, "scope": f"repository:{FORGERY}:pull", "client_id": FORGERY}
    )
    client.get(f"/v2/token?{query}", headers=helpers.basic(name, "wrong"))
    form = {
        "grant_type": "password",
        "username": name,
        "password": "wrong",
        "service": SERVICE,
        "scope": f"repository:{FORGERY}:pull",
        "client_id": FORGERY,
    }
    client.post("/v2/token", data=form)
    text = log.read_bytes().decode("utf-8")
    assert text.endswith("\n") and not RAW_FORBIDDEN & set(text[:-1].replace("\n", ""))
    lines = text.splitlines()
    assert len(lines) == 2
    for line in lines:
        record = json.loads(line)
        assert record["event"] == "token" and record["status"] in (400, 401)
        assert record["user"] == name
        assert record["client_id"] == FORGERY
        # The audit line splits scopes at whitespace, which the forgery has plenty of.
        assert record["scopes"] == f"repository:{FORGERY}:pull".split()
