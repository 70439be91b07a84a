"""Fixtures: a fresh app per test, built from a temporary config directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from auth_service import create_app

from . import helpers
from .redis_server import RedisServer


@pytest.fixture(scope="session")
def signing_key() -> Any:
    return helpers.make_key()


@pytest.fixture(scope="session")
def signing_cert(signing_key: Any) -> Any:
    return helpers.make_cert(signing_key)


@pytest.fixture
def config_dir(tmp_path: Path, signing_key: Any, signing_cert: Any) -> Path:
    return helpers.write_config_dir(tmp_path / "config", signing_key, signing_cert)


@pytest.fixture
def make_app(config_dir: Path) -> Callable[..., Flask]:
    def build(**overrides: Any) -> Flask:
        return create_app({"TESTING": True, "CONFIG_DIR": config_dir, **overrides})

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def get_token(client: FlaskClient, signing_cert: Any) -> Callable[..., dict[str, Any]]:
    """GET /v2/token, assert a spec-shaped 200, and return the verified claims."""

    def fetch(query: str = "", user: str | None = None, **kwargs: Any) -> dict[str, Any]:
        headers = helpers.basic(user, helpers.PASSWORDS[user]) if user else {}
        response = client.get(
            f"/v2/token?service={helpers.SERVICE}&{query}", headers=headers, **kwargs
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        assert body["token"] == body["access_token"]
        return helpers.verify_token(body["token"], signing_cert)

    return fetch


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server of this test's own, on a unix socket and a port on 127.0.0.1
    (``.url``, ``.tcp_url``), stopped at the end; see tests/redis_server.py."""
    with RedisServer(tcp=True) as server:
        yield server
