"""Test helpers: keys, certificates, config directories, and token checking."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import select
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bcrypt
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVICE = "registry.test"
ISSUER = "test-issuer"
TEST_COST = 4  # bcrypt's minimum: the tests check logic, not hashing speed

PASSWORDS = {
    "alice": "alice-pw",
    "bob": "bob-pw",
    "admin": "admin-pw",
    "bób": "pä",
    "colon": "p:w",
}

USERS: dict[str, dict[str, Any]] = {
    "alice": {
        "repositories": {
            "team/app": ["pull", "push"],
            "team/a": ["pull", "push"],
            "team/b": ["pull", "push"],
            "team/new": ["pull", "push"],
            "localhost:5000/team/app": ["pull"],
        }
    },
    "bob": {"repositories": {"team/app": ["pull"], "*": ["pull"]}},
    "admin": {"repositories": {"*": ["*"]}, "catalog": True},
    "bób": {"repositories": {"team/app": ["pull"]}},
    "colon": {"repositories": {"team/app": ["pull"]}},
}

REPOSITORIES = {"blacklist": False, "repositories": ["pub/x", "public-image"]}


def make_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def make_cert(
    key: Any, days: int = 365, start_days_ago: int = 1, ip_address: str | None = None
) -> x509.Certificate:
    """A self-signed certificate; with ``ip_address``, one a TLS client accepts for that IP."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ip_address or "token-test")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=start_days_ago))
        .not_valid_after(now + dt.timedelta(days=days))
    )
    if ip_address:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip_address))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(key, hashes.SHA256())


def key_pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def hash_password(password: str, cost: int = TEST_COST) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


def users_document(cost: int = TEST_COST) -> dict[str, Any]:
    return {
        name: {"pass_hash": hash_password(PASSWORDS[name], cost), **entry}
        for name, entry in USERS.items()
    }


def write_json(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")


def write_config_dir(
    directory: Path,
    key: Any,
    cert: x509.Certificate | None,
    config_py: str | None = None,
    users: Any = None,
    repositories: Any = None,
) -> Path:
    """A complete config directory: config.py, users.json, repositories.json, key, cert."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token.key").write_bytes(key_pem(key))
    if cert is not None:
        (directory / "token.crt").write_bytes(cert_pem(cert))
    if config_py is None:
        config_py = (
            f"ISSUER = {ISSUER!r}\nKEY_PATH = 'token.key'\n"
            + ("CERT_PATH = 'token.crt'\n" if cert is not None else "")
            + f"SERVICE = {SERVICE!r}\n"
        )
    (directory / "config.py").write_text(config_py, encoding="utf-8")
    write_json(directory / "users.json", users_document() if users is None else users)
    write_json(
        directory / "repositories.json", REPOSITORIES if repositories is None else repositories
    )
    return directory


def basic(username: str | bytes, password: str | bytes) -> dict[str, str]:
    user = username.encode() if isinstance(username, str) else username
    secret = password.encode() if isinstance(password, str) else password
    return {"Authorization": "Basic " + base64.b64encode(user + b":" + secret).decode()}


def verify_token(
    token: str, cert: x509.Certificate, audience: str = SERVICE, issuer: str = ISSUER
) -> dict[str, Any]:
    """Decode a token as the registry would: signature by the cert's key, iss, aud, times."""
    header = jwt.get_unverified_header(token)
    return jwt.decode(
        token,
        cert.public_key(),
        algorithms=[header["alg"]],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "nbf", "iat", "iss", "aud", "jti"]},
    )


def access_of(claims: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    """The access claim as {(type, name): set(actions)}."""
    return {(e["type"], e["name"]): set(e["actions"]) for e in claims["access"]}


class FakeClock:
    """A clock the test moves by hand: ``clock.now += 1.5``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def bump_mtime(path: Path) -> None:
    """Move a file's mtime a second on, as a later edit would."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


# Scopes that break the grammar (protocol.md §3): the parser raises, the endpoint answers 400.
MALFORMED_SCOPES = [
    "foo",
    "repository:foo",
    "repository::pull",
    ":::",
    "repository:Team/App:pull",
    "repository:../etc:pull",
    "repository:" + "a" * 300 + ":pull",
]


def in_forked_child(answer: Callable[[], bytes], timeout: float = 10.0) -> bytes:
    """What ``answer()`` gives in a child forked from this process (as uWSGI forks a worker
    from its master), at most 100 bytes; fails the test if the child says nothing in time."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            os.write(write_end, answer())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"the forked child said nothing in {timeout} s")
        return os.read(read_end, 100)
    finally:
        os.waitpid(pid, 0)
        os.close(read_end)


def hold_bcrypt(monkeypatch: Any) -> tuple[threading.Event, threading.Event]:
    """Make every bcrypt check of users.json's hashes wait, once started, until ``release``
    is set: a login held mid-check. Returns ``(started, release)``."""
    from auth_service.files import users as users_module

    started, release = threading.Event(), threading.Event()
    real = users_module.bcrypt.checkpw

    def held_checkpw(password: bytes, hashed: bytes) -> bool:
        started.set()
        assert release.wait(10)
        return real(password, hashed)

    monkeypatch.setattr(users_module.bcrypt, "checkpw", held_checkpw)
    return started, release
