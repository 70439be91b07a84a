"""No input whatsoever yields a 5xx, and failed or malformed credentials never yield a token."""

import base64
from urllib.parse import quote

import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auth_service import create_app

from .. import helpers

SCOPE_PIECES = st.sampled_from(
    [
        "repository",
        "registry",
        "catalog",
        "team/app",
        "pub/x",
        "localhost:5000/a",
        "pull",
        "push",
        "*",
        "delete",
        ":",
        ",",
        " ",
        "(",
        ")",
        "/",
        "..",
        "%",
        "+",
        "\u00e9",
        "\x00",
        "A",
        "-",
        "_",
        ".",
    ]
)
SCOPES = st.lists(SCOPE_PIECES, max_size=12).map("".join) | st.text(max_size=40)
RAW_TEXT = st.text(max_size=60)
AUTH_HEADERS = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=80),
    st.binary(max_size=60).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    st.tuples(st.sampled_from(["alice", "nobody", "", "admin"]), RAW_TEXT).map(
        lambda up: "Basic " + base64.b64encode(f"{up[0]}:{up[1]}".encode()).decode()
    ),
)
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
PATHS = st.sampled_from(["/v2/token", "/auth/token", "/v2/token/", "/", "/v2/"]) | st.text(
    alphabet="/abcv2token%.", max_size=20
).map(lambda p: "/" + p.lstrip("/"))  # "//x" would read as a host name


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory, signing_key, signing_cert):
    config_dir = helpers.write_config_dir(
        tmp_path_factory.mktemp("fuzz") / "config", signing_key, signing_cert
    )
    return create_app({"TESTING": False, "CONFIG_DIR": config_dir}).test_client()


def query(params):
    return "&".join(f"{quote(k, safe='')}={quote(v, safe=':,*()/')}" for k, v in params)


PARAM_NAMES = st.sampled_from(["service", "scope", "account", "offline_token", "client_id", "x"])
PARAMS = st.lists(st.tuples(PARAM_NAMES, SCOPES | st.just(helpers.SERVICE)), max_size=8)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=METHODS, path=PATHS, params=PARAMS, auth=AUTH_HEADERS)
def test_no_input_yields_5xx(fuzz_client, method, path, params, auth):
    headers = {} if auth is None else {"Authorization": auth}
    response = fuzz_client.open(f"{path}?{query(params)}", method=method, headers=headers)
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code != 200 or method == "HEAD":
        return
    if method == "OPTIONS":
        return
    body = response.get_json()
    claims = jwt.decode(
        body["token"],
        signing_cert_public(fuzz_client),
        algorithms=["ES256"],
        options={"verify_aud": False},
    )
    # a token only for no credentials (anonymous) or the right password
    if auth is not None:
        assert claims["sub"] in helpers.PASSWORDS
        assert (
            helpers.basic(claims["sub"], helpers.PASSWORDS[claims["sub"]])["Authorization"].split()[
                1
            ]
            == auth.split()[-1]
        )
    else:
        assert claims["sub"] == ""
        for entry in claims["access"]:
            assert set(entry["actions"]) <= {"pull"}


def signing_cert_public(client):
    service = client.application.extensions["auth_service"]
    return service.signer._key.public_key()


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200))
def test_raw_query_bytes(fuzz_client, raw):
    """Undecodable percent-escapes and bytes in the query string."""
    # WSGI carries the raw query as a latin-1 string, byte for byte
    response = fuzz_client.get(
        "/v2/token", environ_overrides={"QUERY_STRING": raw.decode("latin-1")}
    )
    assert response.status_code in (200, 400)


FORM_FIELDS = st.sampled_from(
    ["grant_type", "username", "password", "refresh_token", "service", "scope", "access_type",
     "client_id"]
)  # fmt: skip
FORM_VALUES = (
    st.sampled_from(["password", "refresh_token", "offline", "alice", "alice-pw", helpers.SERVICE,
                     "rt1.x.y", "repository:team/app:pull,push"])
    | SCOPES
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    fields=st.lists(st.tuples(FORM_FIELDS, FORM_VALUES), max_size=8),
    content_type=st.sampled_from(
        ["application/x-www-form-urlencoded", "application/json", "text/plain", ""]
    ),
)
def test_no_post_body_yields_5xx(fuzz_client, fields, content_type):
    body = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in fields)
    response = fuzz_client.post("/v2/token", data=body, content_type=content_type)
    assert response.status_code in (200, 400, 401), response.get_data(as_text=True)
    assert response.is_json
    if response.status_code == 200:
        sent = {}
        for name, value in fields:
            sent.setdefault(name, value)  # the form's first value counts, as in form.get
        claims = jwt.decode(
            response.get_json()["access_token"],
            signing_cert_public(fuzz_client),
            algorithms=["ES256"],
            options={"verify_aud": False},
        )
        assert sent.get("grant_type") == "password"
        assert helpers.PASSWORDS.get(sent.get("username")) == sent.get("password")
        assert claims["sub"] == sent["username"]
