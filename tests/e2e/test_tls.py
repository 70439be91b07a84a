"""The production TLS settings (nginx/tls.conf) on the same site template, over HTTPS."""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Iterator

import pytest

from auth_service.stack.main import Stack

from .. import helpers
from .conftest import SERVICE, basic_auth, running_stack


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory) -> Iterator[tuple[Stack, ssl.SSLContext]]:
    base = tmp_path_factory.mktemp("tls-stack")
    key = helpers.make_key()
    cert = base / "fullchain.pem"
    cert.write_bytes(helpers.cert_pem(helpers.make_cert(key, days=1, ip_address="127.0.0.1")))
    (base / "privkey.pem").write_bytes(helpers.key_pem(key))
    with running_stack(base, tls=(cert, base / "privkey.pem")) as stack:
        yield stack, ssl.create_default_context(cafile=str(cert))


def https(context: ssl.SSLContext, url: str, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_token_over_https(tls_stack):
    stack, context = tls_stack
    assert stack.url.startswith("https://")
    status, headers, body = https(
        context,
        f"{stack.realm}?service={SERVICE}&scope=repository:team/app:pull",
        basic_auth("alice"),
    )
    assert status == 200
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    token = json.loads(body)["token"]
    status, headers, _ = https(context, f"{stack.url}/v2/", {"Authorization": f"Bearer {token}"})
    assert status == 200
    assert headers["Docker-Distribution-Api-Version"] == "registry/2.0"


def test_registry_challenge_points_at_the_https_realm(tls_stack):
    stack, context = tls_stack
    status, headers, _ = https(context, f"{stack.url}/v2/")
    assert status == 401
    assert f'realm="https://127.0.0.1:{stack.port}/v2/token"' in headers["Www-Authenticate"]
