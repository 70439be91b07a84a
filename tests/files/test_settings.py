"""config.py and AUTH_SERVICE_* overrides; the original service's config keeps working."""

import logging
from pathlib import Path

import pytest

from auth_service import create_app
from auth_service.errors import ConfigError
from auth_service.files.check import check_config
from auth_service.files.settings import load_settings

from .. import helpers

ORIGINAL_CONFIG = """\"\"\"config module for auth-server\"\"\"

AUDIENCE = 'example.org' # should be the domain name of the registry
ISSUER = 'example issuer' # must match the registry's issuer
KEY_PATH = '{key}'
PORT = 5011 # must match the port of REGISTRY_AUTH_TOKEN_REALM
"""


def write(config_dir, text):
    (config_dir / "config.py").write_text(text, encoding="utf-8")


def test_defaults(config_dir):
    settings = load_settings(config_dir, environ={})
    assert settings.issuer == helpers.ISSUER
    assert settings.key_path == config_dir / "token.key"
    assert settings.cert_path == config_dir / "token.crt"
    assert settings.services == (helpers.SERVICE,)
    assert settings.token_lifetime == 900
    assert settings.anonymous_access is True


def test_original_config_py_works_unchanged(config_dir, caplog, signing_cert):
    write(config_dir, ORIGINAL_CONFIG.format(key=config_dir / "token.key"))
    with caplog.at_level(logging.INFO, logger="auth_service"):
        app = create_app({"CONFIG_DIR": config_dir})
    messages = caplog.text
    assert "AUDIENCE is ignored" in messages and "PORT is ignored" in messages
    assert "SERVICE is not set" in messages
    response = app.test_client().get("/v2/token?service=example.org&scope=repository:pub/x:pull")
    assert response.status_code == 200
    claims = helpers.verify_token(
        response.get_json()["token"], signing_cert, "example.org", "example issuer"
    )
    assert claims["iss"] == "example issuer"
    assert helpers.access_of(claims) == {("repository", "pub/x"): {"pull"}}


def test_environment_overrides_the_file(config_dir):
    env = {
        "AUTH_SERVICE_ISSUER": "from-env",
        "AUTH_SERVICE_SERVICE": "a.example, b.example",
        "AUTH_SERVICE_TOKEN_LIFETIME": "120",
        "AUTH_SERVICE_ANONYMOUS_ACCESS": "false",
        "AUTH_SERVICE_BCRYPT_COST": "10",
        "AUTH_SERVICE_REALM": "My registry",
    }
    settings = load_settings(config_dir, environ=env)
    assert settings.issuer == "from-env"
    assert settings.services == ("a.example", "b.example")
    assert settings.token_lifetime == 120
    assert settings.anonymous_access is False
    assert settings.bcrypt_cost == 10
    assert settings.realm == "My registry"


def test_config_dir_from_environment(config_dir):
    settings = load_settings(environ={"AUTH_SERVICE_CONFIG_DIR": str(config_dir)})
    assert settings.config_dir == config_dir


def test_service_may_be_a_list(config_dir):
    write(config_dir, "ISSUER='i'\nKEY_PATH='token.key'\nSERVICE=['a', 'b', 'a']\n")
    assert load_settings(config_dir, environ={}).services == ("a", "b")


@pytest.mark.parametrize(
    ("config_py", "env", "message"),
    [
        ("KEY_PATH='k'\n", {}, "config.py: ISSUER: is required"),
        ("ISSUER='i'\n", {}, "config.py: KEY_PATH: is required"),
        ("ISSUER=''\nKEY_PATH='k'\n", {}, "config.py: ISSUER: must be a non-empty string"),
        ("ISSUER='i'\nKEY_PATH='k'\nTOKEN_LIFETIME=30\n", {}, "config.py: TOKEN_LIFETIME:"),
        ("ISSUER='i'\nKEY_PATH='k'\nANONYMOUS_ACCESS='maybe'\n", {}, "ANONYMOUS_ACCESS: must be"),
        ("ISSUER='i'\nKEY_PATH='k'\nSERVICE=[]\n", {}, "config.py: SERVICE:"),
        ("ISSUER='i'\nKEY_PATH='k'\nSERVICE=[' a']\n", {}, "config.py: SERVICE:"),
        ("ISSUER='i'\nKEY_PATH='k'\nBCRYPT_COST=3\n", {}, "config.py: BCRYPT_COST:"),
        (
            "ISSUER='i'\nKEY_PATH='k'\n",
            {"AUTH_SERVICE_TOKEN_LIFETIME": "soon"},
            "environment AUTH_SERVICE_TOKEN_LIFETIME: must be",
        ),
        ("ISSUER = (\n", {}, "config.py: cannot be loaded"),
        ("raise RuntimeError('boom')\n", {}, "config.py: cannot be loaded: boom"),
    ],
)
def test_bad_settings_name_file_and_key(config_dir, config_py, env, message):
    write(config_dir, config_py)
    with pytest.raises(ConfigError) as caught:
        load_settings(config_dir, environ=env)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_config_py(tmp_path):
    with pytest.raises(ConfigError, match="config.py: file not found"):
        load_settings(tmp_path, environ={})


def test_config_py_runs_as_flask_runs_it_with_its_own_path_and_upper_case_names(config_dir):
    """As Flask's from_pyfile: ``__file__`` is the file, and only upper-case names count."""
    write(
        config_dir,
        "import os\n"
        "ISSUER = 'from ' + os.path.basename(__file__)\n"
        "KEY_PATH = os.path.join(os.path.dirname(__file__), 'token.key')\n"
        "token_lifetime = 30  # lower case: not a setting, so not refused as too short\n",
    )
    settings = load_settings(config_dir, environ={})
    assert settings.issuer == "from config.py"
    assert settings.key_path == config_dir / "token.key"
    assert settings.token_lifetime == 900


def test_an_unreadable_config_py_is_one_line_naming_it(config_dir, monkeypatch):
    # Denied by the kernel for anyone but root (the tests run as root in CI): denied here alike.
    real_read_bytes = Path.read_bytes

    def denied(path: Path) -> bytes:
        if path.name == "config.py":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(ConfigError, match="config.py: cannot be loaded: .*Permission denied"):
        load_settings(config_dir, environ={})


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: (d / "token.key").unlink(), "token.key: KEY_PATH: cannot be read"),
        (lambda d: (d / "token.key").write_text("garbage"), "KEY_PATH: not an unencrypted PEM"),
        (lambda d: (d / "token.crt").write_text("garbage"), "CERT_PATH: not a PEM certificate"),
        (
            lambda d: (d / "token.crt").write_bytes(
                helpers.cert_pem(helpers.make_cert(helpers.make_key()))
            ),
            "certificate does not belong",
        ),
        (lambda d: (d / "users.json").unlink(), "users.json: file not found"),
        (lambda d: (d / "repositories.json").write_text("{"), "repositories.json: invalid JSON"),
    ],
)
def test_startup_refuses_bad_files(config_dir, setup, message):
    setup(config_dir)
    with pytest.raises(ConfigError) as caught:
        create_app({"CONFIG_DIR": config_dir})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_original_service_files_work_unchanged(config_dir, signing_cert):
    """All three files in the original service's shapes, `backlist` spelling included."""
    write(config_dir, ORIGINAL_CONFIG.format(key=config_dir / "token.key"))
    foo_hash, bar_hash = helpers.hash_password("foo"), helpers.hash_password("bar")
    (config_dir / "users.json").write_text(
        '{\n    "foo": {\n        "pass_hash": "' + foo_hash + '",\n'
        '        "repositories": {\n            "some-image" : ["pull"]\n        }\n    },\n'
        '    "bar": {\n        "pass_hash": "' + bar_hash + '",\n'
        '        "repositories": {\n            "*" : ["push", "pull"]\n        }\n    }\n}\n'
    )
    (config_dir / "repositories.json").write_text(
        '{\n    "backlist": false,\n    "repositories": [\n        "some-image"\n    ]\n}\n'
    )
    client = create_app({"CONFIG_DIR": config_dir}).test_client()

    def access(scope, user=None):
        headers = helpers.basic(user, user) if user else {}
        response = client.get(f"/v2/token?service=example.org&scope={scope}", headers=headers)
        assert response.status_code == 200
        claims = helpers.verify_token(
            response.get_json()["token"], signing_cert, "example.org", "example issuer"
        )
        return helpers.access_of(claims)

    assert access("repository:some-image:pull,push", "foo") == {
        ("repository", "some-image"): {"pull"}
    }
    assert access("repository:other:pull,push", "bar") == {
        ("repository", "other"): {"pull", "push"}
    }
    assert access("repository:some-image:pull") == {("repository", "some-image"): {"pull"}}
    assert access("repository:other:pull") == {("repository", "other"): set()}
    assert access("registry:catalog:*") == {("registry", "catalog"): set()}


@pytest.mark.parametrize(
    ("config_py", "env", "expected"),
    [
        ("", {}, "x5c"),
        ("TOKEN_HEADER = 'jwks'\n", {}, "jwks"),
        ("TOKEN_HEADER = 'X5C'\n", {}, "x5c"),
        ("TOKEN_HEADER = 'x5c'\n", {"AUTH_SERVICE_TOKEN_HEADER": " jwks "}, "jwks"),
    ],
)
def test_token_header(config_dir, config_py, env, expected):
    write(config_dir, f"ISSUER='i'\nKEY_PATH='token.key'\n{config_py}")
    assert load_settings(config_dir, environ=env).token_header == expected


@pytest.mark.parametrize(
    ("value", "env", "where"),
    [
        ("'jwk'", {}, "config.py: TOKEN_HEADER: must be "),
        ("'kid'", {}, "config.py: TOKEN_HEADER: must be "),
        ("True", {}, "config.py: TOKEN_HEADER: must be "),
        ("'jwks\\nx5c'", {}, "config.py: TOKEN_HEADER: must be "),
        (
            "'x5c'",
            {"AUTH_SERVICE_TOKEN_HEADER": "rootcertbundle"},
            "AUTH_SERVICE_TOKEN_HEADER: must",
        ),
    ],
)
def test_a_bad_token_header_is_one_line_naming_file_and_key(config_dir, value, env, where):
    write(config_dir, f"ISSUER='i'\nKEY_PATH='token.key'\nTOKEN_HEADER = {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config_dir, environ=env)
    message = str(caught.value)
    assert where in message and '"x5c"' in message and '"jwks"' in message
    assert "\n" not in message


def test_a_bad_token_header_stops_start_up(config_dir):
    with pytest.raises(ConfigError, match="TOKEN_HEADER: must be"):
        create_app({"CONFIG_DIR": config_dir, "TOKEN_HEADER": "x509"})


@pytest.mark.parametrize(("token_header", "warned"), [("x5c", True), ("jwks", False)])
def test_config_check_warns_of_no_certificate_only_for_x5c(config_dir, token_header, warned):
    """With TOKEN_HEADER = "jwks" tokens carry no x5c anyway: no certificate is the setup."""
    (config_dir / "token.key").chmod(0o600)
    write(config_dir, f"ISSUER='i'\nKEY_PATH='token.key'\nTOKEN_HEADER={token_header!r}\n")
    messages = [finding.message for finding in check_config(config_dir)]
    assert any("CERT_PATH: not set" in message for message in messages) is warned, messages


def test_config_check_reports_a_bad_token_header(config_dir):
    (config_dir / "token.key").chmod(0o600)
    with open(config_dir / "config.py", "a", encoding="utf-8") as config_py:
        config_py.write("TOKEN_HEADER = 'x509'\n")
    findings = [f for f in check_config(config_dir) if "TOKEN_HEADER" in f.message]
    assert [(f.problem, f.message.split(" must be ")[0]) for f in findings] == [
        (True, f"{config_dir}/config.py: TOKEN_HEADER:")
    ]
