"""POST /v2/token: the OAuth2 password grant, deciding exactly as GET with Basic does."""

from urllib.parse import quote_from_bytes

import bcrypt
import pytest

from .. import helpers
from ..helpers import SERVICE, access_of
from ..records.test_metrics import value as metrics_value

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


def test_a_body_shorter_than_its_length_is_400_in_the_registrys_terms(client):
    """The client went away mid-body: a 400 like any unreadable form, not Werkzeug's own."""
    response = client.post(
        "/v2/token",
        data=b"grant_type=password&username=alice",
        content_type=FORM,
        environ_overrides={"CONTENT_LENGTH": "1000"},
    )
    assert response.status_code == 400
    assert response.get_json()["errors"][0] == {
        "code": "INVALID_REQUEST",
        "message": "the body could not be read",
        "detail": None,
    }


@pytest.fixture
def bcrypt_checks(monkeypatch):
    """Every bcrypt check run, however the service calls it (the module's own function)."""
    checked = []
    real_checkpw = bcrypt.checkpw

    def counting_checkpw(password, hashed):
        checked.append(hashed)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting_checkpw)
    return checked


def urlencoded(**fields):
    """A form body with each value's raw bytes percent-escaped, whatever their encoding."""
    return "&".join(f"{name}={quote_from_bytes(value)}" for name, value in fields.items())


@pytest.mark.parametrize(
    "field", ["username", "password", "grant_type", "scope", "service", "client_id"]
)
@pytest.mark.parametrize("escaped", [True, False], ids=["percent-escaped", "raw"])
def test_a_field_that_is_not_utf8_is_400_before_any_password_check(
    client, bcrypt_checks, field, escaped
):
    fields = {name: value.encode() for name, value in containerd_form(username="mallory").items()}
    fields[field] = "nobody-\u00e9".encode("latin-1")  # b"\xe9": not UTF-8
    if escaped:
        body = urlencoded(**fields).encode()
    else:
        body = b"&".join(name.encode() + b"=" + value for name, value in fields.items())
    checks_before = metrics_value("auth_bcrypt_checks_total")

    response = client.post("/v2/token", data=body, content_type=FORM)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["errors"][0] == {
        "code": "INVALID_REQUEST",
        "message": "the body is not valid UTF-8",
        "detail": None,
    }
    assert bcrypt_checks == []
    assert metrics_value("auth_bcrypt_checks_total") == checks_before


@pytest.mark.parametrize("field", ["username", "password"])
def test_the_same_name_or_password_in_utf8_costs_the_check_counted_above(
    client, bcrypt_checks, field
):
    fields = {name: value.encode() for name, value in containerd_form(username="mallory").items()}
    fields[field] = "nobody-\u00e9".encode()
    checks_before = metrics_value("auth_bcrypt_checks_total")
    response = client.post("/v2/token", data=urlencoded(**fields), content_type=FORM)
    assert response.status_code == 401
    assert len(bcrypt_checks) == 1  # against the dummy hash: an unknown user
    assert metrics_value("auth_bcrypt_checks_total") == checks_before + 1


def post_as_nginx_passes_a_chunked_body(client, body: bytes):
    return client.post(
        "/v2/token",
        data=body,
        content_type=FORM,
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"CONTENT_LENGTH": str(len(body))},
    )


def test_a_body_chunked_by_the_client_and_de_chunked_by_nginx_is_read_by_its_length(client):
    """What nginx hands uWSGI when its config includes the stock uwsgi_params and doesn't blank
    HTTP_TRANSFER_ENCODING (the original service's config): the de-chunked body, its
    CONTENT_LENGTH, and "Transfer-Encoding: chunked" still in the headers."""
    body = urlencoded(**{k: v.encode() for k, v in containerd_form().items()}).encode()
    response = post_as_nginx_passes_a_chunked_body(client, body)
    assert response.request.environ["HTTP_TRANSFER_ENCODING"] == "chunked"
    assert response.request.environ["CONTENT_LENGTH"] == str(len(body))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["scope"] == "repository:team/app:pull,push"


def test_a_chunked_body_of_a_refresh_grant_is_read_too(client):
    login = post(client, **containerd_form(access_type="offline"))
    refresh_token = login.get_json()["refresh_token"]
    body = urlencoded(
        grant_type=b"refresh_token",
        refresh_token=refresh_token.encode(),
        service=SERVICE.encode(),
        scope=b"repository:team/app:pull",
        client_id=b"skopeo",
    ).encode()
    response = post_as_nginx_passes_a_chunked_body(client, body)
    assert response.status_code == 200, response.get_data(as_text=True)
