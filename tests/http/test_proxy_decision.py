"""Proxy mode's decision endpoint (/auth/proxy), as nginx's auth_request calls it: the original
method and URI in uwsgi variables, the client's Authorization header and address."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest

from auth_service.files.users import UserDirectory
from auth_service.http.proxy_decision import (
    AUTHORIZATION_HEADER,
    BODY_HEADER,
    PROXY_PATH,
    STATUS_HEADER,
)
from auth_service.tokens.signer import IssuedToken
from auth_service.tokens.token_cache import TokenCache

from .. import helpers

DIGEST = "sha256:" + "b" * 64


def ask(client: Any, method: str, uri: str, user: str | None = None, password: str | None = None,
        headers: dict[str, str] | None = None, address: str = "10.0.0.1") -> Any:  # fmt: skip
    """One auth_request subrequest, as nginx/auth-proxy-locations.conf makes it."""
    sent = dict(headers or {})
    if user is not None:
        sent.update(helpers.basic(user, helpers.PASSWORDS[user] if password is None else password))
    return client.get(
        PROXY_PATH,
        headers=sent,
        environ_overrides={"PROXY_METHOD": method, "PROXY_URI": uri, "REMOTE_ADDR": address},
    )


def token_of(response: Any, cert: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.headers
    scheme, _, token = response.headers[AUTHORIZATION_HEADER].partition(" ")
    assert scheme == "Bearer"
    return helpers.verify_token(token, cert)


def refusal(response: Any) -> tuple[int, int, dict[str, Any]]:
    """(the status nginx gets, the refusal's own status, its JSON body as nginx sends it)."""
    body = json.loads(response.headers[BODY_HEADER])
    assert response.get_json() == body
    return response.status_code, int(response.headers[STATUS_HEADER]), body


def code_of(body: dict[str, Any]) -> str:
    return body["errors"][0]["code"]


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


@pytest.fixture
def client(make_app: Any, audit_path: Path) -> Any:
    return make_app(AUDIT_LOG=str(audit_path)).test_client()


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- allowed --------------------------------------------------------------------------------


def test_a_pull_gets_a_token_for_exactly_that(client, signing_cert):
    claims = token_of(ask(client, "GET", "/v2/team/app/manifests/1", "alice"), signing_cert)
    assert claims["sub"] == "alice"
    assert claims["aud"] == helpers.SERVICE
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]


def test_a_push_gets_pull_and_push(client, signing_cert):
    uri = "/v2/team/app/blobs/uploads/"
    claims = token_of(ask(client, "POST", uri, "alice"), signing_cert)
    assert helpers.access_of(claims) == {("repository", "team/app"): {"pull", "push"}}


def test_a_mount_gets_pull_on_the_source_too(client, signing_cert):
    uri = f"/v2/team/new/blobs/uploads/?mount={DIGEST}&from=team/app"
    claims = token_of(ask(client, "POST", uri, "alice"), signing_cert)
    assert helpers.access_of(claims) == {
        ("repository", "team/new"): {"pull", "push"},
        ("repository", "team/app"): {"pull"},
    }


def test_host_port_names(client, signing_cert):
    uri = "/v2/localhost:5000/team/app/tags/list"
    claims = token_of(ask(client, "GET", uri, "alice"), signing_cert)
    assert helpers.access_of(claims) == {("repository", "localhost:5000/team/app"): {"pull"}}


def test_the_base_route_with_good_credentials_gets_a_token_with_no_access(client, signing_cert):
    claims = token_of(ask(client, "GET", "/v2/", "alice"), signing_cert)
    assert (claims["sub"], claims["access"]) == ("alice", [])


def test_unknown_paths_need_only_a_token(client, signing_cert):
    uri = f"/v2/team/app/referrers/{DIGEST}"
    assert token_of(ask(client, "GET", uri, "alice"), signing_cert)["access"] == []
    assert token_of(ask(client, "GET", uri), signing_cert)["access"] == []  # anonymous too


def test_the_catalog_with_its_grant(client, signing_cert):
    claims = token_of(ask(client, "GET", "/v2/_catalog", "admin"), signing_cert)
    assert claims["access"] == [{"type": "registry", "name": "catalog", "actions": ["*"]}]


def test_delete_when_allowed(client, signing_cert):
    uri = f"/v2/team/app/manifests/{DIGEST}"
    claims = token_of(ask(client, "DELETE", uri, "admin"), signing_cert)
    assert helpers.access_of(claims) == {("repository", "team/app"): {"delete"}}


def test_anonymous_pull_of_a_public_repository(client, signing_cert):
    claims = token_of(ask(client, "GET", "/v2/pub/x/manifests/1"), signing_cert)
    assert claims["sub"] == ""
    assert helpers.access_of(claims) == {("repository", "pub/x"): {"pull"}}


def test_a_bearer_token_passes_through_untouched(client, audit_path):
    header = "Bearer abc.def.ghi"
    response = ask(client, "PUT", "/v2/team/app/manifests/1", headers={"Authorization": header})
    assert response.status_code == 200
    assert response.headers[AUTHORIZATION_HEADER] == header
    lower = ask(client, "GET", "/v2/", headers={"Authorization": "bearer x.y.z"})
    assert lower.headers[AUTHORIZATION_HEADER] == "bearer x.y.z"
    assert audit_lines(audit_path) == []  # not a decision: the registry checks the token


# --- refused --------------------------------------------------------------------------------


def test_the_base_route_without_credentials_is_a_basic_challenge(client):
    response = ask(client, "GET", "/v2/")
    assert refusal(response)[:2] == (401, 401)
    assert code_of(refusal(response)[2]) == "UNAUTHORIZED"
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="')


def test_a_wrong_password_is_a_basic_challenge(client):
    response = ask(client, "GET", "/v2/team/app/manifests/1", "alice", "wrong")
    status, real, body = refusal(response)
    assert (status, real, code_of(body)) == (401, 401, "UNAUTHORIZED")
    assert body["errors"][0]["message"] == "incorrect username or password"
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="')


@pytest.mark.parametrize(
    "header",
    ["Basic !!!", "Digest x", "Basic " + "YWxpY2U="],  # not base64; other scheme; no ':'
)
def test_unusable_credentials_are_a_basic_challenge(client, header):
    response = ask(client, "GET", "/v2/", headers={"Authorization": header})
    assert refusal(response)[:2] == (401, 401)


def test_a_known_user_without_the_access_is_denied(client, audit_path):
    response = ask(client, "PUT", "/v2/team/app/manifests/1", "bob")
    status, real, body = refusal(response)
    assert (status, real, code_of(body)) == (403, 403, "DENIED")
    assert body["errors"][0]["message"] == "requested access to the resource is denied"
    assert "WWW-Authenticate" not in response.headers
    [line] = audit_lines(audit_path)
    assert (line["outcome"], line["user"], line["reason"]) == (
        "denied",
        "bob",
        "not granted: repository:team/app:push",
    )


def test_a_mount_from_a_repository_the_user_may_not_pull_is_denied(client):
    uri = f"/v2/team/new/blobs/uploads/?mount={DIGEST}&from=secret/base"
    assert refusal(ask(client, "POST", uri, "alice"))[:2] == (403, 403)


def test_the_catalog_without_its_grant(client):
    assert refusal(ask(client, "GET", "/v2/_catalog", "alice"))[:2] == (403, 403)
    assert refusal(ask(client, "GET", "/v2/_catalog"))[:2] == (401, 401)


def test_anonymous_pull_of_a_private_repository_is_a_basic_challenge(client):
    response = ask(client, "GET", "/v2/team/app/manifests/1")
    assert refusal(response)[:2] == (401, 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


def test_without_anonymous_access_every_anonymous_request_is_challenged(make_app):
    client = make_app(ANONYMOUS_ACCESS=False).test_client()
    assert refusal(ask(client, "GET", "/v2/pub/x/manifests/1"))[:2] == (401, 401)


def test_failed_logins_are_throttled_as_token_logins(make_app):
    client = make_app(LOGIN_THROTTLE_BURST=2, LOGIN_THROTTLE_PER_MINUTE=1).test_client()
    uri = "/v2/team/app/manifests/1"
    for _ in range(2):
        assert refusal(ask(client, "GET", uri, "alice", "wrong"))[:2] == (401, 401)
    response = ask(client, "GET", uri, "alice", "wrong")
    status, real, body = refusal(response)
    # auth_request passes on only 401 and 403: the real status goes in a header for nginx.
    assert (status, real, code_of(body)) == (403, 429, "TOOMANYREQUESTS")
    assert int(response.headers["Retry-After"]) >= 1
    # and the token endpoint counts the same failures
    token = client.get(
        f"/v2/token?service={helpers.SERVICE}",
        headers=helpers.basic("alice", "wrong"),
        environ_overrides={"REMOTE_ADDR": "10.0.0.1"},
    )
    assert token.status_code == 429


def test_without_the_original_request_it_is_an_internal_error(client):
    response = client.get(PROXY_PATH, headers=helpers.basic("alice", "alice-pw"))
    status, real, body = refusal(response)
    assert (status, real, code_of(body)) == (403, 500, "INTERNAL_ERROR")


# --- records ------------------------------------------------------------------------------


def test_each_decision_is_audited(client, audit_path):
    ask(client, "GET", f"/v2/team/app/blobs/{DIGEST}", "alice")
    ask(client, "GET", "/v2/")
    issued, challenged = audit_lines(audit_path)
    assert issued["event"] == "proxy"
    assert (issued["method"], issued["uri"], issued["route"]) == (
        "GET",
        f"/v2/team/app/blobs/{DIGEST}",
        "blob",
    )
    assert (issued["outcome"], issued["user"], issued["access"]) == (
        "issued",
        "alice",
        ["repository:team/app:pull"],
    )
    assert issued["scopes"] == ["repository:team/app:pull"]
    assert issued["reused"] is False and issued["jti"]
    assert (challenged["outcome"], challenged["status"]) == ("challenged", 401)
    assert "Authorization" not in json.dumps([issued, challenged])


# --- cheap per request ----------------------------------------------------------------------


@pytest.fixture
def bcrypt_checks(monkeypatch: Any) -> list[str]:
    checked: list[str] = []
    original = UserDirectory.verify_password

    def counting(self: UserDirectory, name: str, password: str) -> Any:
        checked.append(name)
        return original(self, name, password)

    monkeypatch.setattr(UserDirectory, "verify_password", counting)
    return checked


def test_one_bcrypt_check_and_one_token_for_a_pull_of_many_blobs(client, bcrypt_checks):
    tokens = set()
    for i in range(20):
        uri = f"/v2/team/app/blobs/sha256:{i:064x}"
        tokens.add(ask(client, "GET", uri, "alice").headers[AUTHORIZATION_HEADER])
    assert bcrypt_checks == ["alice"]
    assert len(tokens) == 1
    # Other access, another token; the same access again, the first.
    push = ask(client, "POST", "/v2/team/app/blobs/uploads/", "alice")
    assert push.headers[AUTHORIZATION_HEADER] not in tokens
    again = ask(client, "HEAD", "/v2/team/app/manifests/1", "alice")
    assert again.headers[AUTHORIZATION_HEADER] in tokens
    assert bcrypt_checks == ["alice"]


def test_a_password_change_ends_the_reused_token(client, config_dir, bcrypt_checks):
    uri = "/v2/team/app/manifests/1"
    first = ask(client, "GET", uri, "alice").headers[AUTHORIZATION_HEADER]
    users = json.loads((config_dir / "users.json").read_text())
    users["alice"]["pass_hash"] = helpers.hash_password("new-pw")
    helpers.write_json(config_dir / "users.json", users)
    helpers.bump_mtime(config_dir / "users.json")
    client.application.extensions["auth_service"].live.check_at_next_call()
    assert refusal(ask(client, "GET", uri, "alice"))[:2] == (401, 401)
    second = ask(client, "GET", uri, "alice", "new-pw").headers[AUTHORIZATION_HEADER]
    assert second != first


def test_a_grant_removed_ends_at_once_whatever_the_cache(client, config_dir):
    uri = "/v2/team/app/manifests/1"
    assert ask(client, "GET", uri, "bob").status_code == 200
    users = json.loads((config_dir / "users.json").read_text())
    users["bob"]["repositories"] = {"other/*": ["pull"]}
    helpers.write_json(config_dir / "users.json", users)
    helpers.bump_mtime(config_dir / "users.json")
    client.application.extensions["auth_service"].live.check_at_next_call()
    assert refusal(ask(client, "GET", uri, "bob"))[:2] == (403, 403)


def test_the_token_cache_reuses_while_more_than_half_the_life_remains():
    clock = helpers.FakeClock(1000.0)
    cache = TokenCache(max_entries=2, clock=clock)
    issued = IssuedToken("t1", issued_at=1000, expires_in=300, token_id="j1")
    cache.put("k", b"hash", issued)
    assert cache.get("k", b"hash") is issued
    assert cache.get("k", b"other-hash") is None  # a new password: gone for good
    assert cache.get("k", b"hash") is None
    cache.put("k", b"hash", issued)
    clock.now = 1149.0
    assert cache.get("k", b"hash") is issued
    clock.now = 1150.0
    assert cache.get("k", b"hash") is None
    # bounded: the least recently used goes
    clock.now = 1000.0
    for key in ("a", "b", "c"):
        cache.put(key, b"", issued)
    assert len(cache) == 2 and cache.get("a", b"") is None
    off = TokenCache(max_entries=0)
    off.put("k", b"", issued)
    assert off.get("k", b"") is None


def test_a_reused_token_is_still_valid_for_the_registry(client, signing_cert):
    uri = "/v2/team/app/manifests/1"
    first = ask(client, "GET", uri, "alice")
    second = ask(client, "GET", uri, "alice")
    assert first.headers[AUTHORIZATION_HEADER] == second.headers[AUTHORIZATION_HEADER]
    claims = token_of(second, signing_cert)
    assert claims["exp"] - claims["iat"] >= 60
    assert jwt.get_unverified_header(second.headers[AUTHORIZATION_HEADER][7:])["alg"] == "ES256"
