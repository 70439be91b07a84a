"""The real stack for end-to-end tests: Debian's docker-registry, uWSGI with uwsgi.ini, nginx
with the project's template, on a free port, in a temporary directory, stopped afterwards.

A missing program is an error here, never a skip: CI installs them all
(`python3 -m auth_service.stack test`).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from auth_service.stack.main import Stack, free_port

from .. import helpers

SERVICE = "e2e-registry"
ISSUER = "e2e-issuer"
# Users of the end-to-end tests, by name: (password, users.json entry).
USERS: dict[str, tuple[str, dict[str, Any]]] = {
    "alice": ("alice-e2e-pw", {"repositories": {"*": ["pull", "push"]}}),
    "reader": ("reader-e2e-pw", {"repositories": {"*": ["pull"]}}),
    "admin": ("admin-e2e-pw", {"repositories": {"*": ["*"]}, "catalog": True}),
    # A namespace of her own through a pattern (tests/e2e/test_namespaces.py).
    "carol": ("carol-e2e-pw", {"repositories": {"${user}/*": ["pull", "push", "delete"]}}),
}
PUBLIC_REPOSITORIES = ["public/app"]


def password(user: str) -> str:
    return USERS[user][0]


def write_e2e_config(config_dir: Path) -> None:
    key = helpers.make_key()
    config_py = (
        f"ISSUER = {ISSUER!r}\nKEY_PATH = 'token.key'\nCERT_PATH = 'token.crt'\n"
        f"SERVICE = {SERVICE!r}\n"
    )
    users = {
        name: {"pass_hash": helpers.hash_password(pw), **entry}
        for name, (pw, entry) in USERS.items()
    }
    helpers.write_config_dir(
        config_dir,
        key,
        helpers.make_cert(key),
        config_py=config_py,
        users=users,
        repositories={"blacklist": False, "repositories": PUBLIC_REPOSITORIES},
    )


@contextmanager
def running_stack(
    base: Path,
    tls: tuple[Path, Path] | None = None,
    env: dict[str, str] | None = None,
    users: dict[str, Any] | None = None,
    kind: type[Stack] = Stack,
) -> Iterator[Stack]:
    """A stack with the e2e users (or ``users``, a users.json document) in ``base``, on a free
    port, stopped whatever happens; ``env`` adds settings (``AUTH_SERVICE_<NAME>``)."""
    write_e2e_config(base / "config")
    if users is not None:
        helpers.write_json(base / "config" / "users.json", users)
    (base / "config" / "users.json").chmod(0o600)  # as `auth-service init` makes it
    running = kind.for_config_dir(base / "state", base / "config", free_port())
    running.tls = tls
    running.extra_env = dict(env or {})
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole stack, once per test session."""
    with running_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


def http(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request; returns (status, headers, body) for every status, 4xx/5xx included."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def basic_auth(user: str, secret: str | None = None) -> dict[str, str]:
    raw = f"{user}:{password(user) if secret is None else secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def fetch_token(stack: Stack, query: str, user: str | None = None) -> str:
    headers = basic_auth(user) if user else {}
    status, _, body = http("GET", f"{stack.realm}?service={SERVICE}&{query}", headers)
    assert status == 200, body
    return json.loads(body)["token"]


def wait_for_reload(seconds: float = 1.2) -> None:
    """The service looks at its files at most once a second."""
    time.sleep(seconds)
