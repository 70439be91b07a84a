"""The Authorization header, parsed from raw bytes: anonymous, Basic, or invalid."""

import base64

import pytest

from auth_service.http.credentials import (
    Anonymous,
    BasicCredentials,
    InvalidCredentials,
    Secret,
    parse_authorization,
)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def as_wsgi(raw: bytes) -> str:
    """How a WSGI server hands a header over: the raw bytes decoded as latin-1."""
    return raw.decode("latin-1")


def test_absent_header_is_anonymous():
    assert parse_authorization(None) == Anonymous()


@pytest.mark.parametrize(
    ("header", "username", "password"),
    [
        ("Basic " + b64(b"alice:pw"), "alice", "pw"),
        ("basic " + b64(b"alice:pw"), "alice", "pw"),
        ("BASIC " + b64(b"alice:pw"), "alice", "pw"),
        ("Basic  " + b64(b"alice:pw"), "alice", "pw"),
        ("Basic " + b64(b"alice:p:w"), "alice", "p:w"),
        (as_wsgi(b"Basic " + b64("bób:pä".encode()).encode()), "bób", "pä"),
    ],
)
def test_basic(header, username, password):
    parsed = parse_authorization(header)
    assert parsed == BasicCredentials(username, Secret(password))
    assert parsed.password.reveal() == password


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Basic",
        "Basic ",
        "Basic !!!!",
        "Basic abc",
        "Basic " + b64(b"alice"),
        "Basic " + b64(b":pw"),
        "Basic " + b64(b"alice:"),
        "Basic " + b64(b"\xff:pw"),
        "Basic " + b64(b"alice:\xfe\xff"),
        "Bearer abc",
        'Digest username="alice", realm="r"',
        "Negotiate abc",
        "Basic \u20ac",
        "Basicx " + b64(b"alice:pw"),
    ],
)
def test_invalid(header):
    assert isinstance(parse_authorization(header), InvalidCredentials)


def test_secret_never_prints():
    secret = Secret("hunter2")
    parsed = BasicCredentials("alice", secret)
    for rendering in (str(secret), repr(secret), f"{secret}", "%s" % secret, repr(parsed)):  # noqa: UP031 (logging formats with %)
        assert "hunter2" not in rendering
    assert secret.reveal() == "hunter2"
