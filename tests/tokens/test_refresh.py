"""Refresh tokens: the codec, revocation, and the grants that use them through the app."""

import json
import time

import pytest

from auth_service.files.revocations import (
    Revocations,
    load_revocations,
    revoke_token,
    revoke_user,
)
from auth_service.files.users import User, UserDirectory
from auth_service.tokens.refresh import InvalidRefreshToken, RefreshTokenCodec

from .. import helpers
from ..helpers import SERVICE, access_of, basic
from ..http.test_oauth_post import containerd_form, post

KEY = b"k" * 32
ALICE = User("alice", helpers.hash_password("pw").encode(), {"team/app": frozenset({"pull"})})
USERS = UserDirectory({"alice": ALICE})
NONE_REVOKED = Revocations()


def codec(clock=None, key=KEY, lifetime=3600):
    return RefreshTokenCodec(key, lifetime, clock or helpers.FakeClock(1_800_000_000))


def test_round_trip():
    token, claims = codec().issue(ALICE, SERVICE)
    assert token.startswith("rt1.") and len(token) < 300
    assert codec().verify(token, SERVICE, USERS, NONE_REVOKED) is ALICE
    assert claims.expires_at - claims.issued_at == 3600


def test_reusable_many_times():
    token, _ = codec().issue(ALICE, SERVICE)
    for _ in range(100):
        assert codec().verify(token, SERVICE, USERS, NONE_REVOKED) is ALICE


def test_ids_are_unique():
    ids = {codec().issue(ALICE, SERVICE)[1].token_id for _ in range(500)}
    assert len(ids) == 500


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"),  # signature
        lambda t: t.replace("rt1.", "rt2."),
        lambda t: "rt1." + t.split(".")[1][:-1] + "." + t.split(".")[2],  # payload
        lambda t: "",
        lambda t: "rt1..",
        lambda t: "x" * 5000,
        lambda t: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln",  # a JWT, like access tokens
    ],
)
def test_forgeries_are_refused(mangle):
    token, _ = codec().issue(ALICE, SERVICE)
    with pytest.raises(InvalidRefreshToken):
        codec().verify(mangle(token), SERVICE, USERS, NONE_REVOKED)


def test_another_key_refuses():
    token, _ = codec().issue(ALICE, SERVICE)
    with pytest.raises(InvalidRefreshToken):
        codec(key=b"other" * 8).verify(token, SERVICE, USERS, NONE_REVOKED)


def test_expiry():
    clock = helpers.FakeClock(1_800_000_000)
    token, _ = codec(clock).issue(ALICE, SERVICE)
    clock.now += 3599
    codec(clock).verify(token, SERVICE, USERS, NONE_REVOKED)
    clock.now += 1
    with pytest.raises(InvalidRefreshToken, match="expired"):
        codec(clock).verify(token, SERVICE, USERS, NONE_REVOKED)


def test_bound_to_the_service():
    token, _ = codec().issue(ALICE, SERVICE)
    with pytest.raises(InvalidRefreshToken, match="another service"):
        codec().verify(token, "other.test", USERS, NONE_REVOKED)


def test_password_change_and_removal_revoke():
    token, _ = codec().issue(ALICE, SERVICE)
    new_hash = User("alice", helpers.hash_password("new").encode(), ALICE.repositories)
    with pytest.raises(InvalidRefreshToken, match="revoked"):
        codec().verify(token, SERVICE, UserDirectory({"alice": new_hash}), NONE_REVOKED)
    with pytest.raises(InvalidRefreshToken, match="revoked"):
        codec().verify(token, SERVICE, UserDirectory({}), NONE_REVOKED)


def test_acl_changes_do_not_revoke():
    """A refresh token carries identity only: new grants apply, the token stays good."""
    token, _ = codec().issue(ALICE, SERVICE)
    more = User("alice", ALICE.pass_hash, {"*": frozenset({"pull", "push"})})
    assert codec().verify(token, SERVICE, UserDirectory({"alice": more}), NONE_REVOKED) is more


def test_revocation_of_one_token_and_of_a_user(tmp_path):
    path = tmp_path / "revocations.json"
    # both tokens are issued before the revocations
    clock = helpers.FakeClock(int(time.time()) - 10)
    first, first_claims = codec(clock).issue(ALICE, SERVICE)
    clock.now += 1
    second, _ = codec(clock).issue(ALICE, SERVICE)

    revoke_token(path, first_claims.token_id, first_claims.expires_at)
    revocations = load_revocations(path)
    with pytest.raises(InvalidRefreshToken, match="revoked"):
        codec(clock).verify(first, SERVICE, USERS, revocations)
    assert codec(clock).verify(second, SERVICE, USERS, revocations) is ALICE

    revoke_user(path, "alice")
    revocations = load_revocations(path)
    with pytest.raises(InvalidRefreshToken, match="revoked"):
        codec(clock).verify(second, SERVICE, USERS, revocations)
    clock.now = int(time.time()) + 1  # a login after the revocation gets a working token
    third, _ = codec(clock).issue(ALICE, SERVICE)
    assert codec(clock).verify(third, SERVICE, USERS, revocations) is ALICE


def test_revocation_writes_keep_every_entry_and_drop_expired(tmp_path):
    path = tmp_path / "revocations.json"
    revoke_token(path, "expired", 1)
    for i in range(20):
        revoke_token(path, f"id{i}", 4_000_000_000)
    document = json.loads(path.read_text())
    assert set(document["tokens"]) == {f"id{i}" for i in range(20)}


def test_missing_revocations_file_revokes_nothing(tmp_path):
    assert load_revocations(tmp_path / "revocations.json") == Revocations()


# --- through the app ---


def login_refresh_token(client, user="alice"):
    response = client.get(
        f"/v2/token?account={user}&client_id=docker&offline_token=true&service={SERVICE}",
        headers=basic(user, helpers.PASSWORDS[user]),
    )
    assert response.status_code == 200
    return response.get_json()["refresh_token"]


def refresh(client, token, scope="repository:team/a:push,pull repository:team/b:pull", **extra):
    form = {
        "grant_type": "refresh_token",
        "refresh_token": token,
        "client_id": "docker",
        "service": SERVICE,
        "scope": scope,
        **extra,
    }
    return client.post("/v2/token", data=form, content_type="application/x-www-form-urlencoded")


def test_docker_refresh_grant(client, signing_cert):
    token = login_refresh_token(client)
    for _ in range(100):  # the same refresh token, again and again (moby#39718)
        response = refresh(client, token)
        assert response.status_code == 200
    body = response.get_json()
    assert "refresh_token" not in body  # never rotated
    assert body["scope"] == "repository:team/a:pull,push repository:team/b:pull"
    claims = helpers.verify_token(body["access_token"], signing_cert)
    assert claims["sub"] == "alice"
    assert access_of(claims) == {
        ("repository", "team/a"): {"pull", "push"},
        ("repository", "team/b"): {"pull"},
    }


def test_offline_refresh_grant_returns_the_same_token(client):
    token = login_refresh_token(client)
    body = refresh(client, token, access_type="offline").get_json()
    assert body["refresh_token"] == token


def test_password_grant_offline_returns_a_refresh_token(client):
    response = post(client, **containerd_form(access_type="offline"))
    token = response.get_json()["refresh_token"]
    assert refresh(client, token).status_code == 200


def test_refresh_token_for_another_service_is_401(make_app):
    client = make_app(SERVICE=[SERVICE, "other.test"]).test_client()
    token = login_refresh_token(client)
    response = refresh(client, token, service="other.test")
    assert response.status_code == 401
    assert "another service" in response.get_json()["errors"][0]["message"]


def test_access_token_is_not_a_refresh_token(client):
    access = client.get(f"/v2/token?service={SERVICE}", headers=basic("alice", "alice-pw"))
    assert refresh(client, access.get_json()["token"]).status_code == 401


def test_refresh_token_is_not_a_password(client):
    token = login_refresh_token(client)
    assert client.get(f"/v2/token?service={SERVICE}", headers=basic("", token)).status_code == 401
    assert (
        client.get(f"/v2/token?service={SERVICE}", headers=basic("alice", token)).status_code == 401
    )


def test_anonymous_never_gets_one(client):
    response = client.get(f"/v2/token?service={SERVICE}&offline_token=true")
    assert "refresh_token" not in response.get_json()


def test_password_change_revokes_through_reload(make_app, config_dir, monkeypatch):
    from auth_service.files import live_config

    monkeypatch.setattr(live_config, "RELOAD_CHECK_SECONDS", 0.0)
    client = make_app().test_client()
    token = login_refresh_token(client)
    document = helpers.users_document()
    document["alice"]["pass_hash"] = helpers.hash_password("changed")
    helpers.write_json(config_dir / "users.json", document)
    helpers.bump_mtime(config_dir / "users.json")
    response = refresh(client, token)
    assert response.status_code == 401
    assert "log in again" in response.get_json()["errors"][0]["message"]


def test_refresh_tokens_can_be_disabled(make_app):
    client = make_app(REFRESH_TOKEN_LIFETIME=0).test_client()
    response = client.get(
        f"/v2/token?offline_token=true&service={SERVICE}", headers=basic("alice", "alice-pw")
    )
    assert response.status_code == 200
    assert "refresh_token" not in response.get_json()
    assert refresh(client, "rt1.x.y").status_code == 401
