"""``"refresh_tokens": false`` on a user: logins get an access token and no refresh token.

Then ``docker login`` stores the password, not an ``identitytoken``, in ``config.json``; an
imagePullSecret made from that file works, as kubelet ignores identity tokens.
"""

import json
from pathlib import Path

import pytest

from auth_service.errors import ConfigError
from auth_service.files.users import parse_users

from .. import helpers
from ..helpers import SERVICE, basic
from ..http.test_oauth_post import containerd_form, post


@pytest.fixture
def bob_without_refresh_tokens(config_dir):
    users = json.loads((config_dir / "users.json").read_text())
    users["bob"]["refresh_tokens"] = False
    helpers.write_json(config_dir / "users.json", users)


def docker_login(client, user):
    """What ``docker login`` asks for: a token, and a refresh token to store."""
    response = client.get(
        f"/v2/token?account={user}&client_id=docker&offline_token=true&service={SERVICE}",
        headers=basic(user, helpers.PASSWORDS[user]),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_docker_login_of_such_a_user_gets_no_refresh_token(bob_without_refresh_tokens, client):
    body = docker_login(client, "bob")
    assert "refresh_token" not in body
    assert body["token"]
    assert "refresh_token" in docker_login(client, "alice")  # the others are unchanged


def test_the_oauth_password_grant_of_such_a_user_gets_no_refresh_token(
    bob_without_refresh_tokens, client
):
    form = containerd_form(username="bob", password=helpers.PASSWORDS["bob"], access_type="offline")
    response = post(client, **form)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert "refresh_token" not in response.get_json()
    alice = post(client, **containerd_form(access_type="offline"))
    assert "refresh_token" in alice.get_json()


@pytest.mark.parametrize("value", [True, False])
def test_the_flag_is_read_from_users_json(value):
    entry = {"pass_hash": helpers.hash_password("pw"), "refresh_tokens": value}
    directory = parse_users(Path("users.json"), {"carol": entry})
    assert directory.get("carol").refresh_tokens is value


def test_refresh_tokens_are_on_by_default():
    directory = parse_users(Path("users.json"), {"carol": {"pass_hash": "$2b$04$" + "a" * 53}})
    assert directory.get("carol").refresh_tokens is True


def test_a_flag_that_is_not_a_boolean_is_refused():
    entry = {"pass_hash": helpers.hash_password("pw"), "refresh_tokens": "no"}
    with pytest.raises(ConfigError, match="user 'carol': refresh_tokens: must be true or false"):
        parse_users(Path("users.json"), {"carol": entry})


def test_turning_the_flag_off_ends_the_refresh_tokens_a_user_holds(config_dir, make_app):
    app = make_app()
    client = app.test_client()
    refresh_token = docker_login(client, "bob")["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "service": SERVICE}
    assert post(client, **form).status_code == 200
    users = json.loads((config_dir / "users.json").read_text())
    users["bob"]["refresh_tokens"] = False
    helpers.write_json(config_dir / "users.json", users)
    app.extensions["auth_service"].live.check_at_next_call()
    refused = post(client, **form)
    assert refused.status_code == 401
    assert "refresh tokens are off" in refused.get_data(as_text=True)
