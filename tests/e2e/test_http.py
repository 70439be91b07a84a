"""HTTP through the project's nginx config and uwsgi.ini, against Debian's docker-registry."""

from __future__ import annotations

import json
import re
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection

import jwt
import pytest

from .. import helpers
from .conftest import (
    PUBLIC_REPOSITORIES,
    SERVICE,
    USERS,
    basic_auth,
    fetch_token,
    http,
    password,
    wait_for_reload,
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_registry_challenge_names_realm_and_service(stack):
    status, headers, _ = http("GET", f"{stack.url}/v2/")
    assert status == 401
    assert headers["Www-Authenticate"] == f'Bearer realm="{stack.realm}",service="{SERVICE}"'
    assert headers["Docker-Distribution-Api-Version"] == "registry/2.0"


def test_token_opens_the_registry(stack):
    token = fetch_token(stack, "", user="alice")
    status, headers, _ = http("GET", f"{stack.url}/v2/", bearer(token))
    assert status == 200
    assert headers["Docker-Distribution-Api-Version"] == "registry/2.0"


def test_wrong_password_through_nginx(stack):
    status, headers, body = http(
        "GET", f"{stack.realm}?service={SERVICE}", basic_auth("alice", "wrong")
    )
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Basic realm=")
    assert json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED"


def test_unknown_service_gets_no_token(stack):
    status, _, body = http("GET", f"{stack.realm}?service=evil", basic_auth("admin"))
    assert status == 400
    assert "token" not in json.loads(body)


def test_3kb_of_scopes_is_not_a_502(stack):
    scopes = "&".join(f"scope=repository:team/app-{i:03d}:pull,push" for i in range(100))
    assert len(scopes) > 3000
    token = fetch_token(stack, scopes, user="alice")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert len(claims["access"]) == 100
    assert all(entry["actions"] == ["pull", "push"] for entry in claims["access"])


def test_oversized_requests_get_4xx_not_5xx(stack):
    status, _, _ = http("GET", f"{stack.realm}?service={SERVICE}&scope=" + "a" * 9000)
    assert status == 414
    status, _, _ = http(
        "GET", f"{stack.realm}?service={SERVICE}", {"Authorization": "Basic " + "QUFB" * 2600}
    )
    assert 400 <= status < 500
    status, _, _ = http(
        "POST",
        stack.realm,
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"scope=" + b"a" * (1024 * 1024),
    )
    assert status == 413


def test_chunked_post_body_reaches_the_app(stack):
    """containers/image sends its form chunked, without Content-Length (protocol.md §1.4)."""
    form = urllib.parse.urlencode(
        {
            "grant_type": "password",
            "username": "alice",
            "password": password("alice"),
            "client_id": "containers/image",
            "service": SERVICE,
            "scope": "repository:team/app:pull,push",
        }
    ).encode()
    connection = HTTPConnection("127.0.0.1", stack.port, timeout=30)
    try:
        connection.request(
            "POST",
            "/v2/token",
            body=iter([form[:20], form[20:]]),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 200, body
    assert body["scope"] == "repository:team/app:pull,push"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "alice"


@pytest.mark.parametrize("name", ["tokenizer", "token", "auth/token"])
def test_repositories_named_like_the_token_path_reach_the_registry(stack, name):
    status, headers, _ = http("GET", f"{stack.url}/v2/{name}/tags/list")
    assert status == 401
    assert f'scope="repository:{name}:pull"' in headers["Www-Authenticate"]
    token = fetch_token(stack, f"scope=repository:{name}:pull", user="alice")
    status, _, body = http("GET", f"{stack.url}/v2/{name}/tags/list", bearer(token))
    assert status == 404  # the registry's NAME_UNKNOWN, not the token service
    assert json.loads(body)["errors"][0]["code"] == "NAME_UNKNOWN"


def test_nothing_else_is_exposed(stack):
    for path in ("/", "/auth/", "/token", "/v2token"):
        status, _, _ = http("GET", f"{stack.url}{path}")
        assert status == 404, path


def anonymous_pull_status(stack, repository: str) -> int:
    token = fetch_token(stack, f"scope=repository:{repository}:pull")
    status, _, _ = http("GET", f"{stack.url}/v2/{repository}/tags/list", bearer(token))
    return status


def test_anonymous_whitelist(stack):
    assert anonymous_pull_status(stack, PUBLIC_REPOSITORIES[0]) == 404  # allowed, just empty
    assert anonymous_pull_status(stack, "private/app") == 401


def test_anonymous_blacklist(stack):
    repositories = stack.config_dir / "repositories.json"
    original = repositories.read_bytes()
    try:
        helpers.write_json(repositories, {"blacklist": True, "repositories": ["private/app"]})
        wait_for_reload()
        assert anonymous_pull_status(stack, "private/app") == 401
        assert anonymous_pull_status(stack, "anything/else") == 404
    finally:
        repositories.write_bytes(original)
        wait_for_reload()
    assert anonymous_pull_status(stack, "anything/else") == 401


def test_catalog_needs_the_catalog_right(stack):
    admin = fetch_token(stack, "scope=registry:catalog:*", user="admin")
    assert http("GET", f"{stack.url}/v2/_catalog", bearer(admin))[0] == 200
    alice = fetch_token(stack, "scope=registry:catalog:*", user="alice")
    assert http("GET", f"{stack.url}/v2/_catalog", bearer(alice))[0] == 401


def test_parallel_requests_never_mix_users(stack):
    """uWSGI runs several workers and threads: each answer is for its own request."""
    users = list(USERS) * 8

    def subject_and_jti(user: str) -> tuple[str, str, str]:
        claims = jwt.decode(
            fetch_token(stack, f"scope=repository:{user}/app:pull", user=user),
            options={"verify_signature": False},
        )
        return user, claims["sub"], claims["jti"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(subject_and_jti, users))
    assert all(user == sub for user, sub, _ in results)
    assert len({jti for _, _, jti in results}) == len(users)


def test_uwsgi_log_never_holds_secrets(stack):
    log = (stack.state_dir / "uwsgi.log").read_text(errors="replace")
    assert re.search(r"GET /v2/token\?", log)  # the request log is there...
    for user in USERS:
        assert password(user) not in log  # ...without any password
    assert "Basic " not in log and "eyJ" not in log
