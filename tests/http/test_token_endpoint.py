"""GET /v2/token through the Flask test client: protocol.md §5 A-F, each token verified."""

import base64
import re

import bcrypt
import pytest

from auth_service.files import users as users_module

from .. import helpers
from ..helpers import SERVICE, access_of, basic

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def assert_unauthorized(response, message=None):
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="')
    assert response.content_type == "application/json"
    body = response.get_json()
    assert body["errors"][0]["code"] == "UNAUTHORIZED"
    assert "token" not in body and "access_token" not in body
    if message:
        assert body["errors"][0]["message"] == message


def assert_bad_request(response):
    assert response.status_code == 400
    assert response.content_type == "application/json"
    body = response.get_json()
    assert body["errors"][0]["code"] == "INVALID_REQUEST"
    assert body["errors"][0]["message"]
    assert "token" not in body


# --- A. Anonymous ---


def test_anonymous_without_scope(client, signing_cert):
    response = client.get(f"/v2/token?service={SERVICE}")
    assert response.status_code == 200
    body = response.get_json()
    assert body["token"] == body["access_token"]
    assert type(body["expires_in"]) is int and body["expires_in"] >= 60
    assert RFC3339.match(body["issued_at"])
    claims = helpers.verify_token(body["token"], signing_cert)
    assert claims["sub"] == ""
    assert claims["aud"] == SERVICE
    assert claims["access"] == []


def test_anonymous_pull_of_public_repository(get_token):
    assert get_token("scope=repository:pub/x:pull")["access"] == [
        {"type": "repository", "name": "pub/x", "actions": ["pull"]}
    ]


def test_anonymous_push_is_cut_to_pull(get_token):
    assert access_of(get_token("scope=repository:pub/x:pull,push")) == {
        ("repository", "pub/x"): {"pull"}
    }


def test_anonymous_private_repository_gets_nothing_not_401(get_token):
    assert access_of(get_token("scope=repository:team/app:pull")) == {
        ("repository", "team/app"): set()
    }


def test_anonymous_never_gets_a_refresh_token(client):
    response = client.get(f"/v2/token?service={SERVICE}&offline_token=true&client_id=x")
    assert response.status_code == 200
    assert "refresh_token" not in response.get_json()


def test_account_without_credentials_is_still_anonymous(get_token):
    claims = get_token("account=admin&scope=registry:catalog:*")
    assert claims["sub"] == ""
    assert access_of(claims) == {("registry", "catalog"): set()}


def test_anonymous_can_be_switched_off(make_app):
    client = make_app(ANONYMOUS_ACCESS=False).test_client()
    assert_unauthorized(client.get(f"/v2/token?service={SERVICE}&scope=repository:pub/x:pull"))
    response = client.get(f"/v2/token?service={SERVICE}", headers=basic("alice", "alice-pw"))
    assert response.status_code == 200


def test_blacklist_mode(make_app, config_dir, signing_cert):
    helpers.write_json(
        config_dir / "repositories.json", {"blacklist": True, "repositories": ["team/app"]}
    )
    client = make_app().test_client()
    response = client.get(
        f"/v2/token?service={SERVICE}&scope=repository:team/app:pull&scope=repository:anything:pull"
    )
    claims = helpers.verify_token(response.get_json()["token"], signing_cert)
    assert access_of(claims) == {
        ("repository", "team/app"): set(),
        ("repository", "anything"): {"pull"},
    }


# --- B. Authentication ---


def test_docker_login_shape(get_token, client):
    claims = get_token("account=alice&client_id=docker&offline_token=true", user="alice")
    assert claims["sub"] == "alice"
    assert claims["access"] == []
    response = client.get(
        f"/v2/token?account=alice&client_id=docker&offline_token=true&service={SERVICE}",
        headers=basic("alice", "alice-pw"),
    )
    assert response.get_json()["refresh_token"].startswith("rt1.")
    without = client.get(f"/v2/token?service={SERVICE}", headers=basic("alice", "alice-pw"))
    assert "refresh_token" not in without.get_json()


def test_wrong_password_and_unknown_user_are_indistinguishable(client):
    wrong = client.get(f"/v2/token?service={SERVICE}", headers=basic("alice", "wrong"))
    unknown = client.get(f"/v2/token?service={SERVICE}", headers=basic("nobody", "alice-pw"))
    assert_unauthorized(wrong, "incorrect username or password")
    assert_unauthorized(unknown)
    assert wrong.get_data() == unknown.get_data()
    assert dict(wrong.headers) == dict(unknown.headers)


def test_unknown_user_costs_one_bcrypt_check_at_the_users_cost(client, monkeypatch):
    """Same work for a wrong password and an unknown user: one checkpw at the same cost."""
    costs = []
    real_checkpw = bcrypt.checkpw

    def spy(password, hashed):
        costs.append(users_module.bcrypt_cost(hashed))
        return real_checkpw(password, hashed)

    monkeypatch.setattr(users_module.bcrypt, "checkpw", spy)
    for username, password in [("alice", "wrong"), ("nobody", "x")]:
        client.get(f"/v2/token?service={SERVICE}", headers=basic(username, password))
    assert costs == [helpers.TEST_COST] * 2


@pytest.mark.parametrize("password", ["p" * 73, "é" * 37, "alice-pw\0"])
@pytest.mark.parametrize("username", ["alice", "nobody"])
def test_a_password_bcrypt_can_never_match_is_refused_without_a_check(
    client, monkeypatch, username, password
):
    """Over 72 bytes or with a NUL: 401 at once, the same for every user, and no bcrypt turn."""
    calls = []
    monkeypatch.setattr(users_module.bcrypt, "checkpw", lambda *args: calls.append(args))
    response = client.get(f"/v2/token?service={SERVICE}", headers=basic(username, password))
    assert_unauthorized(response, "incorrect username or password")
    assert calls == []


def test_account_never_changes_the_subject(get_token):
    assert get_token("account=bob", user="alice")["sub"] == "alice"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer abc",
        "Basic !!!!",
        "Basic abc",
        "Basic " + base64.b64encode(b"alice").decode(),
        "Basic " + base64.b64encode(b"\xff:pw").decode(),
        "Basic " + base64.b64encode(b":pw").decode(),
        "Basic ",
        "Basic",
        "",
        'Digest username="alice", realm="r", nonce="n", uri="/", response="x"',
    ],
)
def test_malformed_authorization_is_401_never_anonymous(client, header):
    response = client.get(
        f"/v2/token?service={SERVICE}&scope=repository:pub/x:pull",
        headers={"Authorization": header},
    )
    assert_unauthorized(response)


def test_refresh_token_as_password_with_empty_user_is_401(client):
    response = client.get(f"/v2/token?service={SERVICE}", headers=basic("", "some-refresh-token"))
    assert_unauthorized(response)


def test_password_with_colon(get_token):
    assert get_token(user="colon")["sub"] == "colon"


def test_utf8_credentials(get_token):
    assert get_token("scope=repository:team/app:pull", user="bób")["sub"] == "bób"


@pytest.mark.parametrize("length", [73, 100, 10_000])
def test_overlong_password_is_401_not_500(client, length):
    response = client.get(f"/v2/token?service={SERVICE}", headers=basic("alice", "p" * length))
    assert_unauthorized(response)


def test_lower_case_scheme_and_extra_space(client):
    token = base64.b64encode(b"alice:alice-pw").decode()
    for header in (f"basic {token}", f"Basic  {token}"):
        response = client.get(f"/v2/token?service={SERVICE}", headers={"Authorization": header})
        assert response.status_code == 200


def test_huge_authorization_header_is_4xx(client):
    response = client.get(
        f"/v2/token?service={SERVICE}", headers={"Authorization": "Basic " + "QUFB" * 2500}
    )
    assert response.status_code == 401


# --- C. Scopes ---


def test_pull_push_in_either_order(get_token):
    for actions in ("pull,push", "push,pull"):
        claims = get_token(f"scope=repository:team/app:{actions}", user="alice")
        assert access_of(claims) == {("repository", "team/app"): {"pull", "push"}}


def test_over_asking_is_intersected(get_token):
    assert access_of(get_token("scope=repository:pub/x:pull,push", user="alice")) == {
        ("repository", "pub/x"): {"pull"}
    }


def test_cross_repository_mount(get_token):
    claims = get_token(
        "scope=repository:team/new:pull,push&scope=repository:team/app:pull", user="alice"
    )
    assert access_of(claims) == {
        ("repository", "team/new"): {"pull", "push"},
        ("repository", "team/app"): {"pull"},
    }


def test_mount_from_forbidden_source(get_token):
    claims = get_token(
        "scope=repository:team/new:pull,push&scope=repository:secret/x:pull", user="alice"
    )
    assert access_of(claims) == {
        ("repository", "team/new"): {"pull", "push"},
        ("repository", "secret/x"): set(),
    }


@pytest.mark.parametrize("separator", ["%20", "+"])
def test_space_separated_scopes(get_token, separator):
    claims = get_token(
        f"scope=repository:team/a:pull{separator}repository:team/b:pull", user="alice"
    )
    assert access_of(claims) == {
        ("repository", "team/a"): {"pull"},
        ("repository", "team/b"): {"pull"},
    }


def test_same_resource_twice_is_merged(get_token):
    claims = get_token(
        "scope=repository:team/a:pull&scope=repository:team/a:pull,push", user="alice"
    )
    assert claims["access"] == [
        {"type": "repository", "name": "team/a", "actions": ["pull", "push"]}
    ]


def test_host_port_name(get_token):
    claims = get_token("scope=repository:localhost:5000/team/app:pull,push", user="alice")
    assert access_of(claims) == {("repository", "localhost:5000/team/app"): {"pull"}}


def test_plugin_class_becomes_repository(get_token):
    claims = get_token("scope=repository(plugin):team/app:pull", user="alice")
    assert claims["access"] == [{"type": "repository", "name": "team/app", "actions": ["pull"]}]


def test_catalog(get_token):
    assert access_of(get_token("scope=registry:catalog:*", user="admin")) == {
        ("registry", "catalog"): {"*"}
    }
    assert access_of(get_token("scope=registry:catalog:*", user="alice")) == {
        ("registry", "catalog"): set()
    }


def test_star_gives_concrete_subset(get_token):
    assert access_of(get_token("scope=repository:team/app:*", user="alice")) == {
        ("repository", "team/app"): {"pull", "push"}
    }
    assert access_of(get_token("scope=repository:team/app:*", user="admin")) == {
        ("repository", "team/app"): {"*"}
    }


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("repository:team/app:delete", set()),
        ("widget:foo:pull", set()),
        ("repository:team/app:pull,frob", {"pull"}),
    ],
)
def test_nothing_unknown_is_granted(get_token, scope, expected):
    claims = get_token(f"scope={scope}", user="alice")
    [entry] = claims["access"]
    assert set(entry["actions"]) == expected


def test_empty_scope_is_ignored(get_token):
    assert get_token("scope=", user="alice")["access"] == []


@pytest.mark.parametrize("scope", helpers.MALFORMED_SCOPES)
def test_broken_scopes_are_400(client, scope):
    response = client.get(
        f"/v2/token?service={SERVICE}&scope={scope}", headers=basic("admin", "admin-pw")
    )
    assert_bad_request(response)


# --- D. Service / audience ---


def test_single_configured_service_is_the_default(get_token, client, signing_cert):
    response = client.get("/v2/token")
    assert response.status_code == 200
    assert helpers.verify_token(response.get_json()["token"], signing_cert)["aud"] == SERVICE


def test_missing_service_with_several_configured_is_400(make_app):
    client = make_app(SERVICE=[SERVICE, "other.test"]).test_client()
    assert_bad_request(client.get("/v2/token"))
    assert client.get("/v2/token?service=other.test").status_code == 200


@pytest.mark.parametrize("service", ["evil", SERVICE.upper(), SERVICE + " "])
def test_unknown_service_is_400(client, service):
    assert_bad_request(client.get("/v2/token", query_string={"service": service}))


def test_unset_service_accepts_what_is_asked_but_not_nothing(make_app, config_dir, signing_cert):
    (config_dir / "config.py").write_text(
        f"ISSUER={helpers.ISSUER!r}\nKEY_PATH='token.key'\nCERT_PATH='token.crt'\n"
    )
    client = make_app().test_client()
    response = client.get("/v2/token?service=any.example")
    claims = helpers.verify_token(response.get_json()["token"], signing_cert, "any.example")
    assert claims["aud"] == "any.example"
    assert_bad_request(client.get("/v2/token"))
    assert_bad_request(client.get("/v2/token?service="))


# --- E. JWT structure and F. response format ---


def test_token_claims_and_response(client, signing_cert, signing_key):
    from auth_service.tokens.signer import libtrust_key_id

    response = client.get(
        f"/v2/token?service={SERVICE}&scope=repository:team/app:pull",
        headers=basic("alice", "alice-pw"),
    )
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at"}
    import jwt

    header = jwt.get_unverified_header(body["token"])
    assert header["alg"] == "ES256" and header["typ"] == "JWT"
    assert header["kid"] == libtrust_key_id(signing_key.public_key())
    assert len(header["x5c"]) == 1
    claims = helpers.verify_token(body["token"], signing_cert)
    assert all(type(claims[k]) is int for k in ("exp", "nbf", "iat"))
    assert claims["exp"] - claims["iat"] == body["expires_in"] == 900
    assert claims["nbf"] <= claims["iat"]
    assert isinstance(claims["aud"], str)
    for entry in claims["access"]:
        assert set(entry) == {"type", "name", "actions"}
        assert isinstance(entry["actions"], list)


def test_configured_lifetime(make_app, signing_cert):
    response = make_app(TOKEN_LIFETIME=120).test_client().get(f"/v2/token?service={SERVICE}")
    body = response.get_json()
    claims = helpers.verify_token(body["token"], signing_cert)
    assert body["expires_in"] == 120 == claims["exp"] - claims["iat"]


def test_jti_unique_across_requests(client):
    import jwt

    jtis = set()
    for _ in range(200):
        token = client.get(f"/v2/token?service={SERVICE}").get_json()["token"]
        jtis.add(jwt.decode(token, options={"verify_signature": False})["jti"])
    assert len(jtis) == 200


def test_autoredirect_path(client, signing_cert):
    response = client.get(f"/auth/token?service={SERVICE}&scope=repository:pub/x:pull")
    assert response.status_code == 200


# --- methods and paths ---


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_json(client, method):
    response = client.open(f"/v2/token?service={SERVICE}", method=method)
    assert response.status_code == 405
    assert response.content_type == "application/json"
    assert response.get_json()["errors"][0]["code"] == "UNSUPPORTED"
    assert "GET" in response.headers["Allow"]


def test_head_answers_get_headers_without_a_body(client):
    get = client.get(f"/v2/token?service={SERVICE}&scope=repository:pub/x:pull")
    head = client.head(f"/v2/token?service={SERVICE}&scope=repository:pub/x:pull")
    assert head.status_code == 200
    assert head.get_data() == b""
    assert head.headers["Content-Type"] == get.headers["Content-Type"] == "application/json"
    assert head.headers["Cache-Control"] == "no-store"


def test_options_names_the_methods(client):
    response = client.options("/v2/token")
    assert response.status_code == 200
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST", "OPTIONS"}


def test_non_utf8_query_is_400_json(client):
    response = client.get(f"/v2/token?service={SERVICE}&scope=repository:%FF:pull")
    assert response.status_code == 400
    assert "UTF-8" in response.get_json()["errors"][0]["message"]


def test_unknown_path_is_404_json(client):
    response = client.get("/v2/tokens")
    assert response.status_code == 404
    assert response.get_json()["errors"][0]["code"] == "NOT_FOUND"


# --- the live configuration through the app ---


def test_user_added_at_runtime_can_log_in(make_app, config_dir, monkeypatch):
    from auth_service.files import live_config

    monkeypatch.setattr(live_config, "RELOAD_CHECK_SECONDS", 0.0)
    client = make_app().test_client()
    document = helpers.users_document()
    document["carol"] = {"pass_hash": helpers.hash_password("carol-pw")}
    helpers.write_json(config_dir / "users.json", document)
    helpers.bump_mtime(config_dir / "users.json")
    response = client.get(f"/v2/token?service={SERVICE}", headers=basic("carol", "carol-pw"))
    assert response.status_code == 200


def test_query_that_is_not_utf8_is_400(client):
    response = client.get("/v2/token", environ_overrides={"QUERY_STRING": "scope=\xff\xfe"})
    assert_bad_request(response)


def test_a_bug_is_a_logged_500_json_without_details(client, monkeypatch, caplog):
    service = client.application.extensions["auth_service"]

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service, "grant_token", broken)
    response = client.get(f"/v2/token?service={SERVICE}")
    assert response.status_code == 500
    assert response.get_json()["errors"][0]["code"] == "INTERNAL_ERROR"
    assert b"secret internals" not in response.get_data()
    assert "secret internals" in caplog.text
