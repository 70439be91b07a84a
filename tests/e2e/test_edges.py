"""The edges of the stack, through the real nginx and uWSGI: what a hostile client or an unlucky
operator sends that neither the token service nor a normal client would.

- Many headers are answered, never 502 (uwsgi.ini: max-vars).
- Every answer on the token paths and /auth/* is JSON in the registry's error format, nginx's own
  included (nginx/json-errors.conf): 400, 403, 404, 405, 413, 414, 501, 505 and 502.
- No password, Basic credential or token reaches any log the stack writes, nginx's error log at
  the level the local stack ships (nginx/standalone.conf.template) included.
- No client can forge or split a line of uWSGI's request log, nginx's access log or the audit log.

One stack for the module; the test that stops uWSGI starts it again.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from auth_service.stack.main import Stack, stop_pid_file

from .conftest import SERVICE, USERS, password, running_stack

ANONYMOUS_QUERY = f"service={SERVICE}&scope=repository:public/app:pull"


@pytest.fixture(scope="module")
def edge_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of this module's own: its tests read every log it writes, and stop uWSGI."""
    with running_stack(tmp_path_factory.mktemp("edges")) as stack:
        yield stack


# --- raw HTTP: the requests here are ones no HTTP library would send -------------------------


@dataclass
class Answer:
    """An HTTP answer as it came over the wire."""

    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


def http_request(
    method: bytes | str = "GET",
    target: bytes | str = "/v2/token",
    headers: list[tuple[str, bytes | str]] | None = None,
    body: bytes = b"",
    version: bytes = b"HTTP/1.1",
    host: bytes | None = b"127.0.0.1",
) -> bytes:
    """The bytes of one request, exactly as given; Content-Length for a body unless chunked."""
    as_bytes = lambda value: value if isinstance(value, bytes) else value.encode()  # noqa: E731
    lines = [as_bytes(method) + b" " + as_bytes(target) + b" " + version]
    if host is not None:
        lines.append(b"Host: " + host)
    fields = headers or []
    lines += [as_bytes(name) + b": " + as_bytes(value) for name, value in fields]
    chunked = any(name.lower() == "transfer-encoding" for name, _ in fields)
    if body and not chunked:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def exchange(stack: Stack, request: bytes, source: str = "127.0.0.1") -> Answer:
    """Send ``request`` on a new connection (from ``source``) and read the answer to its end."""
    received = b""
    with socket.create_connection(
        ("127.0.0.1", stack.port), timeout=30, source_address=(source, 0)
    ) as connection:
        # nginx answers a body it refuses before reading it, and may close first; the unread
        # rest of it may then reset the connection.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.sendall(request)
        with contextlib.suppress(ConnectionResetError):
            while chunk := connection.recv(65536):
                received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


def assert_json_error(answer: Answer, status: int, code: str) -> dict:
    """The registry's error format: {"errors": [{"code", "message", "detail"}]}."""
    assert answer.status == status, answer
    assert answer.headers.get("content-type") == "application/json", answer
    document = json.loads(answer.body)
    (error,) = document["errors"]
    assert error["code"] == code, document
    assert error["message"] and "detail" in error
    return error


# --- many headers -------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [150, 300, 900])
def test_many_headers_are_answered_not_502(edge_stack: Stack, count: int) -> None:
    """uWSGI's default room (128 vars) made 114 extra headers a 502."""
    headers = [(f"X-Extra-{i}", "v") for i in range(count)]
    answer = exchange(
        edge_stack, http_request(target=f"/v2/token?{ANONYMOUS_QUERY}", headers=headers)
    )
    assert answer.status == 200, answer
    assert json.loads(answer.body)["token"]


def test_headers_filling_nginxs_buffers_are_answered_not_502(edge_stack: Stack) -> None:
    """Over 32 KB of headers passed nginx but not uWSGI's buffer-size, which dropped them."""
    headers = [(f"X-Extra-{i:03d}", "v" * 115) for i in range(250)]
    answer = exchange(
        edge_stack, http_request(target=f"/v2/token?{ANONYMOUS_QUERY}", headers=headers)
    )
    assert answer.status == 200, answer


def test_more_headers_than_nginx_takes_are_a_json_400(edge_stack: Stack) -> None:
    headers = [(f"X-Extra-{i:04d}", "some value") for i in range(2000)]
    answer = exchange(
        edge_stack, http_request(target=f"/v2/token?{ANONYMOUS_QUERY}", headers=headers)
    )
    assert_json_error(answer, 400, "INVALID_REQUEST")


# --- JSON from nginx as well ------------------------------------------------------------------

BIG_FORM = b"scope=" + b"a" * (70 * 1024)
FORM = ("Content-Type", "application/x-www-form-urlencoded")


def _chunked(body: bytes, size: int = 8192) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


TOKEN_PATHS = ["/v2/token", "/auth/token"]
SERVICE_PATHS = [*TOKEN_PATHS, "/auth/health", "/auth/metrics"]

# (name, request, status, code): what nginx refuses itself, before or instead of the service.
NGINX_REFUSALS = [
    *[
        (
            f"body over 64 KiB {path}",
            http_request("POST", path, [FORM], BIG_FORM),
            413,
            "SIZE_INVALID",
        )
        for path in TOKEN_PATHS
    ],
    (
        "chunked body over 64 KiB",
        http_request(
            "POST", "/v2/token", [FORM, ("Transfer-Encoding", "chunked")], _chunked(BIG_FORM)
        ),
        413,
        "SIZE_INVALID",
    ),
    *[
        (
            f"URI too long {path}",
            http_request(target=f"{path}?scope=" + "a" * 9000),
            414,
            "INVALID_REQUEST",
        )
        for path in SERVICE_PATHS
    ],
    (
        "header line too long",
        http_request(headers=[("Authorization", "Basic " + "QUFB" * 2600)]),
        400,
        "INVALID_REQUEST",
    ),
    (
        "duplicate Authorization",
        http_request(headers=[("Authorization", "Basic YTpi"), ("Authorization", "Basic YTpi")]),
        400,
        "INVALID_REQUEST",
    ),
    ("malformed request line", http_request(method="get"), 400, "INVALID_REQUEST"),
    ("no Host", http_request(host=None), 400, "INVALID_REQUEST"),
    ("unknown HTTP version", http_request(version=b"HTTP/3.0"), 505, "UNSUPPORTED"),
    (
        "unknown transfer coding",
        http_request("POST", "/v2/token", [FORM, ("Transfer-Encoding", "gzip")], b"x"),
        501,
        "UNSUPPORTED",
    ),
    *[(f"TRACE {path}", http_request("TRACE", path), 405, "UNSUPPORTED") for path in SERVICE_PATHS],
    *[
        (f"unknown path {path}", http_request(target=path), 404, "NOT_FOUND")
        for path in (
            "/auth/anything",
            "/auth/",
            "/auth/token/",
            "/",
            "/x.html",
            "/.json-errors/404",
            "/.json-errors/502",
        )
    ],
]


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        pytest.param(request, status, code, id=name)
        for name, request, status, code in NGINX_REFUSALS
    ],
)
def test_nginx_answers_json_itself(
    edge_stack: Stack, request_bytes: bytes, status: int, code: str
) -> None:
    assert_json_error(exchange(edge_stack, request_bytes), status, code)


def test_metrics_refused_to_another_address_in_json(edge_stack: Stack) -> None:
    request = http_request(target="/auth/metrics")
    assert exchange(edge_stack, request).status == 200  # from 127.0.0.1: allowed
    # 127.0.0.2 is this machine too, but not an address the location allows.
    assert_json_error(exchange(edge_stack, request, source="127.0.0.2"), 403, "DENIED")


def test_the_services_own_answers_pass_as_they_are(edge_stack: Stack) -> None:
    """nginx turns only its own errors into JSON: the service's messages and headers stay."""
    answer = exchange(edge_stack, http_request(target=f"/v2/token?service={SERVICE}&scope=bad"))
    assert "scope 'bad'" in assert_json_error(answer, 400, "INVALID_REQUEST")["message"]
    wrong = base64.b64encode(b"alice:wrong").decode()
    answer = exchange(edge_stack, http_request(headers=[("Authorization", f"Basic {wrong}")]))
    assert_json_error(answer, 401, "UNAUTHORIZED")
    assert answer.headers["www-authenticate"].startswith("Basic realm=")


# --- no secret in any log ---------------------------------------------------------------------


def _logs(stack: Stack) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(stack.state_dir.glob("*.log"))}


def _wait_for_logs(stack: Stack) -> None:
    """Until a request sent now is in uWSGI's log and nginx's access log: both are written after
    the answer leaves, uWSGI's by its master's log thread."""
    marker = uuid.uuid4().hex
    exchange(stack, http_request(target=f"/v2/token?{ANONYMOUS_QUERY}&client_id={marker}"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        logs = _logs(stack)
        if all(marker.encode() in logs[name] for name in ("uwsgi.log", "nginx-access.log")):
            return
        time.sleep(0.05)
    raise AssertionError("the request with the marker never reached the logs")


def test_no_password_or_credential_in_any_log(edge_stack: Stack) -> None:
    """Duplicated and over-long Authorization headers, bad Basic, a real login: then every log of
    the stack (nginx's error and access logs, uWSGI's log with the audit lines, the registry's)
    is searched for each password, Basic credential and token."""
    secrets: set[str] = set()
    for user in USERS:
        secrets.add(password(user))
        secrets.add(base64.b64encode(f"{user}:{password(user)}".encode()).decode())
    alice = base64.b64encode(f"alice:{password('alice')}".encode()).decode()
    # Longer than an nginx header buffer (8 KiB): nginx's info level writes the line's start.
    long_credential = base64.b64encode(f"alice:{password('alice')}".encode() + b"x" * 9000)
    requests = [
        http_request(headers=[("Authorization", f"Basic {alice}")] * 2),
        http_request(headers=[("Authorization", f"Basic {alice}"), ("authorization", "Basic x")]),
        http_request(headers=[("Authorization", b"Basic " + long_credential)]),
        http_request(headers=[("Authorization", f"Basic alice:{password('alice')}")]),
        http_request(headers=[("Authorization", password("alice"))]),
        http_request(headers=[("Authorization", f"Bearer {alice}")]),
        http_request(
            headers=[
                ("Authorization", "Basic " + base64.b64encode(password("reader").encode()).decode())
            ]
        ),
        http_request(
            "POST",
            "/v2/token",
            [FORM],
            urllib.parse.urlencode(
                {"grant_type": "password", "username": "admin", "password": password("admin")}
            ).encode(),
        ),
    ]
    statuses = [exchange(edge_stack, request).status for request in requests]
    assert statuses == [400, 400, 400, 401, 401, 401, 401, 200], statuses
    login = exchange(
        edge_stack,
        http_request(
            target=f"/v2/token?{ANONYMOUS_QUERY}&offline_token=true",
            headers=[("Authorization", f"Basic {alice}")],
        ),
    )
    assert login.status == 200
    document = json.loads(login.body)
    secrets |= {document["token"], document["refresh_token"]}
    # The registry's log too: a good token, and Basic credentials where it wants a token.
    for credential, status in ((f"Bearer {document['token']}", 200), (f"Basic {alice}", 401)):
        answer = exchange(
            edge_stack, http_request(target="/v2/", headers=[("Authorization", credential)])
        )
        assert answer.status == status
    _wait_for_logs(edge_stack)

    logs = _logs(edge_stack)
    assert {"nginx-error.log", "nginx-access.log", "uwsgi.log", "registry.log"} <= set(logs)
    assert b"alice" in logs["uwsgi.log"]  # the requests were logged...
    for name, content in logs.items():
        text = content.decode("utf-8", errors="replace")
        for secret in secrets:
            assert secret not in text, f"{name} holds a secret"  # ...without any secret
        assert long_credential[:40].decode() not in text, f"{name} holds a credential's start"


# --- no forged or split log line ----------------------------------------------------------------

# A fake end of a request log line, terminal escapes (colour, window title, CSI), C1 controls,
# DEL, Unicode's line and paragraph separators, the other characters str.splitlines() splits at,
# a bidirectional override; no colon (a Basic user name ends at one), no CR or LF (not a header).
FORGERY = (
    'evil" => 200 0B 0ms "x\x1b[31mred\x1b]0;title\x07\x0b\x0c\x1c\x1d\x1e\x7f'
    '\x85\x9b2J\u2028\u2029\u202e{"event"="token","user"="admin"} Zoë'
)
REQUEST_LOG_LINE = re.compile(r"\S+ [A-Z]+ \S+ => \d{3} \d+B \d+ms")
ACCESS_LOG_LINE = re.compile(
    r'[0-9a-f.:]+ - .* \[\d\d/\w{3}/\d{4}(:\d\d){3} [+-]\d{4}\] "[^"]*" \d{3} \d+ "[^"]*" "[^"]*"'
)
# Controls, DEL, C1, line and paragraph separators, bidirectional overrides: never raw in a log.
RAW_FORBIDDEN = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def test_no_client_can_forge_or_split_a_log_line(edge_stack: Stack) -> None:
    """The forgery in the User-Agent, the user name (Basic and form), the scope and client_id,
    percent-encoded and as raw bytes: afterwards every line of uWSGI's log (request lines and
    audit lines) and of nginx's access log is one record that parses, and no control or
    line-separator character is raw in either."""
    forged_ua = FORGERY.encode() + b"\x85\xff forged-user-agent"  # invalid UTF-8 too
    name = FORGERY  # no colon in it
    encoded = urllib.parse.quote(FORGERY, safe="")
    scope = f"repository:{FORGERY}:pull"
    requests = [
        http_request(
            target=f"/v2/token?service={SERVICE}&client_id={encoded}",
            headers=[("User-Agent", forged_ua)],
        ),
        http_request(
            target=f"/auth/token?service={SERVICE}&client_id={encoded}"
            f"&scope={urllib.parse.quote(scope, safe='')}",
            headers=[
                ("User-Agent", forged_ua),
                ("Authorization", "Basic " + base64.b64encode(f"{name}:pw".encode()).decode()),
            ],
        ),
        http_request(
            target=b"/v2/token?service="
            + SERVICE.encode()
            + b'&client_id=raw\xe2\x80\xa8\xc2\x85"x',
            headers=[("User-Agent", forged_ua)],
        ),
        http_request(
            "POST",
            "/v2/token",
            [FORM, ("User-Agent", forged_ua)],
            urllib.parse.urlencode(
                {
                    "grant_type": "password",
                    "username": name,
                    "password": "pw",
                    "service": SERVICE,
                    "scope": scope,
                    "client_id": FORGERY,
                }
            ).encode(),
        ),
    ]
    statuses = [exchange(edge_stack, request).status for request in requests]
    # The forged scope is refused (400) before any password check; each request is audited.
    assert statuses == [200, 400, 200, 400], statuses
    _wait_for_logs(edge_stack)
    logs = _logs(edge_stack)

    try:
        uwsgi_text = logs["uwsgi.log"].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AssertionError(f"uwsgi.log holds a raw client byte: {exc}") from None
    assert not RAW_FORBIDDEN.search(uwsgi_text.replace("\n", ""))
    assert "forged-user-agent" not in uwsgi_text  # the User-Agent is not in uWSGI's log at all
    audit: list[dict] = []
    for line in uwsgi_text.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            assert record["event"] == "token", line
            audit.append(record)
        elif " => " in line:
            assert REQUEST_LOG_LINE.fullmatch(line), line
    # Each forged value is in one record, whole, exactly as the client sent it.
    assert [r["user"] for r in audit if r["user"] == name] == [name, name]
    assert len([r for r in audit if r["client_id"] == FORGERY]) == 3
    assert len([r for r in audit if r["client_id"] == 'raw\u2028\x85"x']) == 1
    assert [r["scopes"] for r in audit if r["user"] == name] == [scope.split()] * 2
    # The raw-byte query: uWSGI logs the path only; the percent-encoded ones as sent.
    assert "GET /v2/token?(unprintable) => 200" in uwsgi_text
    assert f"GET /v2/token?service={SERVICE}&client_id={encoded} => 200" in uwsgi_text

    access = logs["nginx-access.log"]
    assert re.fullmatch(rb"[\x20-\x7e\n]*", access), "a raw control or non-ASCII byte"
    for line in access.decode().splitlines():
        assert ACCESS_LOG_LINE.fullmatch(line), line
    assert b"\\x1B[31mred" in access and b"\\x22 => 200 0B 0ms \\x22x" in access  # escaped


# --- the token service down ---------------------------------------------------------------------


def test_uwsgi_down_is_a_json_502_with_retry_after(edge_stack: Stack) -> None:
    stop_pid_file(
        edge_stack.pid_path("uwsgi"), "uwsgi", 15.0, edge_stack.processes.pop("uwsgi", None)
    )
    try:
        for path in SERVICE_PATHS:
            for method in ("GET", "POST"):
                answer = exchange(edge_stack, http_request(method, path, [FORM], b"a=b"))
                assert_json_error(answer, 502, "UNAVAILABLE")
                assert answer.headers["retry-after"] == "1"
    finally:
        edge_stack.restart("uwsgi")
    answer = exchange(edge_stack, http_request(target=f"/v2/token?{ANONYMOUS_QUERY}"))
    assert answer.status == 200
