"""POST /v2/token: the OAuth2 password grant, deciding exactly as GET with Basic does."""

import pytest

from . import helpers
from .helpers import SERVICE, access_of

FORM = "application/x-www-form-urlencoded"


def post(client, **fields):
    return client.post("/v2/token", data=fields, content_type=FORM)


def containerd_form(**overrides):
    """What containerd sends (protocol.md §1.4), scopes space-joined in one field."""
    form = {
        "grant_type": "password",
        "username": "alice",
        "password": "alice-pw",
        "client_id": "containerd-client",
        "service": SERVICE,
        "scope": "repository:team/app:pull,push repository:secret/x:pull",
    }
    form.update(overrides)
    return form


def test_password_grant(client, signing_cert):
    response = post(client, **containerd_form())
    assert response.status_code == 200
    body = response.get_json()
    assert body["access_token"] == body["token"]
    assert type(body["expires_in"]) is int
    assert body["scope"] == "repository:team/app:pull,push"
    assert "refresh_token" not in body  # only with access_type=offline
    claims = helpers.verify_token(body["access_token"], signing_cert)
    assert claims["sub"] == "alice"
    assert access_of(claims) == {
        ("repository", "team/app"): {"pull", "push"},
        ("repository", "secret/x"): set(),
    }


def test_autoredirect_path_takes_post_too(client):
    response = client.post("/auth/token", data=containerd_form(), content_type=FORM)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "overrides",
    [{"password": "wrong"}, {"username": "nobody"}, {"password": ""}, {"username": ""}],
)
def test_bad_credentials_are_401(client, overrides):
    response = post(client, **containerd_form(**overrides))
    assert response.status_code == 401
    assert response.get_json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert "access_token" not in response.get_json()


def test_wrong_password_and_unknown_user_match_get(client):
    wrong = post(client, **containerd_form(password="wrong"))
    unknown = post(client, **containerd_form(username="nobody"))
    assert wrong.get_data() == unknown.get_data()


@pytest.mark.parametrize(
    "overrides",
    [
        {"grant_type": "refresh_token"},  # without the refresh_token field
        {"grant_type": "authorization_code"},
        {"grant_type": ""},
        {"scope": "repository::pull"},
        {"service": "evil"},
    ],
)
def test_malformed_requests_are_400(client, overrides):
    response = post(client, **containerd_form(**overrides))
    assert response.status_code == 400
    assert response.get_json()["errors"][0]["code"] == "INVALID_REQUEST"


def test_missing_grant_type_is_400(client):
    form = containerd_form()
    del form["grant_type"]
    assert post(client, **form).status_code == 400


def test_json_body_is_400(client):
    response = client.post("/v2/token", json=containerd_form())
    assert response.status_code == 400


def test_large_body_is_413_json(client):
    response = client.post("/v2/token", data={"scope": "x" * (1024 * 1024)}, content_type=FORM)
    assert response.status_code == 413
    assert response.get_json()["errors"]
