"""``auth-service keys generate`` and ``keys jwks``."""

import base64
import datetime as dt
import json
import logging
import stat

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from auth_service.errors import ConfigError
from auth_service.tokens.signer import (
    jwk_thumbprint,
    libtrust_key_id,
    load_certificate,
    load_private_key,
)

from .. import helpers
from .test_cli import run


def b64url_int(text):
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def test_generate_writes_a_private_p256_key_and_its_certificate(tmp_path):
    key_path, cert_path = tmp_path / "new.key", tmp_path / "new.crt"
    code, output = run(
        tmp_path, "keys", "generate", "--key", key_path, "--cert", cert_path,
        "--name", "tokens.example.org", "--days", "90",
    )  # fmt: skip
    assert code == 0, output
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = load_private_key(key_path)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    now = dt.datetime.now(dt.UTC)
    cert = load_certificate(cert_path, key, now)  # belongs to the key, valid now
    common_name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [attribute.value for attribute in common_name] == ["tokens.example.org"]
    assert abs(cert.not_valid_after_utc - (now + dt.timedelta(days=90))) < dt.timedelta(minutes=1)
    assert cert.not_valid_before_utc <= now


def test_generate_refuses_to_overwrite_without_force(config_dir):
    before = (config_dir / "token.key").read_bytes(), (config_dir / "token.crt").read_bytes()
    code, output = run(config_dir, "keys", "generate")  # KEY_PATH and CERT_PATH of config.py
    assert code == 1 and "token.key exists (--force replaces it)" in output
    assert ((config_dir / "token.key").read_bytes(), (config_dir / "token.crt").read_bytes()) == (
        before
    )
    code, output = run(config_dir, "keys", "generate", "--force", "--name", "rotated")
    assert code == 0, output
    key = load_private_key(config_dir / "token.key")
    cert = load_certificate(config_dir / "token.crt", key, dt.datetime.now(dt.UTC))
    assert (config_dir / "token.key").read_bytes() != before[0]
    assert cert.subject.rfc4514_string() == "CN=rotated"


def test_generate_without_config_needs_paths(tmp_path):
    code, output = run(tmp_path, "keys", "generate")
    assert code == 2 and "give --key and --cert" in output
    assert list(tmp_path.iterdir()) == []


def test_jwks_kid_is_the_libtrust_key_id_and_x_y_are_the_key(config_dir, signing_cert):
    code, output = run(config_dir, "keys", "jwks")  # CERT_PATH of config.py
    assert code == 0, output
    (key,) = json.loads(output)["keys"]
    public = signing_cert.public_key()
    assert key["kid"] == libtrust_key_id(public)
    assert (key["kty"], key["crv"], key["use"], key["alg"]) == ("EC", "P-256", "sig", "ES256")
    assert len(key["x"]) == len(key["y"]) == 43  # 32 bytes, unpadded
    numbers = public.public_numbers()
    assert (b64url_int(key["x"]), b64url_int(key["y"])) == (numbers.x, numbers.y)


def test_a_token_verifies_with_the_jwks_key_its_kid_names(make_app, config_dir):
    response = make_app().test_client().get(f"/v2/token?service={helpers.SERVICE}")
    token = response.get_json()["token"]
    keys = {k["kid"]: k for k in json.loads(run(config_dir, "keys", "jwks")[1])["keys"]}
    jwk = jwt.PyJWK(keys[jwt.get_unverified_header(token)["kid"]])
    claims = jwt.decode(token, jwk.key, algorithms=[jwk.algorithm_name], audience=helpers.SERVICE)
    assert claims["iss"] == helpers.ISSUER


def test_jwks_of_old_and_new_certificates_while_rotating(tmp_path, signing_cert):
    old = tmp_path / "old.crt"
    old.write_bytes(helpers.cert_pem(signing_cert))
    new_key = helpers.make_key(ec.SECP384R1())
    new_cert = helpers.make_cert(new_key)
    bundle = tmp_path / "bundle.crt"
    bundle.write_bytes(helpers.cert_pem(signing_cert) + helpers.cert_pem(new_cert))

    for options in (["--cert", old, "--cert", bundle], ["--cert", bundle]):
        code, output = run(tmp_path, "keys", "jwks", *options)
        assert code == 0, output
        keys = json.loads(output)["keys"]
        assert [k["kid"] for k in keys] == [
            libtrust_key_id(signing_cert.public_key()),
            libtrust_key_id(new_key.public_key()),
        ]
        assert (keys[1]["crv"], keys[1]["alg"], len(keys[1]["x"])) == ("P-384", "ES384", 64)


def test_jwks_of_an_rsa_certificate(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa.crt").write_bytes(helpers.cert_pem(helpers.make_cert(key)))
    code, output = run(tmp_path, "keys", "jwks", "--cert", tmp_path / "rsa.crt")
    assert code == 0, output
    (jwk,) = json.loads(output)["keys"]
    assert (jwk["kty"], jwk["alg"], jwk["kid"]) == (
        "RSA",
        "RS256",
        libtrust_key_id(key.public_key()),
    )
    numbers = key.public_key().public_numbers()
    assert (b64url_int(jwk["n"]), b64url_int(jwk["e"])) == (numbers.n, numbers.e)


@pytest.mark.parametrize(
    ("content", "complaint"), [(b"not a certificate", "not a PEM certificate"), (None, "cannot")]
)
def test_jwks_of_a_bad_file_is_one_line(tmp_path, content, complaint):
    path = tmp_path / "bad.crt"
    if content is not None:
        path.write_bytes(content)
    code, output = run(tmp_path, "keys", "jwks", "--cert", path)
    assert code == 1 and output.startswith(f"Error: {path}: {complaint}")
    assert len(output.splitlines()) == 1


def test_jwks_without_a_certificate_says_so(tmp_path):
    code, output = run(tmp_path, "keys", "jwks")
    assert code == 2 and "give --cert" in output


def test_generated_certificate_is_a_valid_x509_ca_for_the_bundle(tmp_path):
    run(tmp_path, "keys", "generate", "--key", tmp_path / "k", "--cert", tmp_path / "c")
    cert = x509.load_pem_x509_certificate((tmp_path / "c").read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.subject == cert.issuer  # self-signed: it is its own root in rootcertbundle


def test_during_rotation_cert_path_may_be_a_bundle_whose_first_certificate_is_ours(
    make_app, config_dir, signing_cert
):
    """The compose recipe of the README: token.crt holds our certificate, then the other one."""
    other = helpers.make_cert(helpers.make_key())
    path = config_dir / "token.crt"
    path.write_bytes(helpers.cert_pem(signing_cert) + helpers.cert_pem(other))
    response = make_app().test_client().get(f"/v2/token?service={helpers.SERVICE}")
    token = response.get_json()["token"]
    x5c = jwt.get_unverified_header(token)["x5c"]
    assert [x509.load_der_x509_certificate(base64.b64decode(c)) for c in x5c] == [signing_cert]
    kids = [k["kid"] for k in json.loads(run(config_dir, "keys", "jwks")[1])["keys"]]
    assert kids == [libtrust_key_id(signing_cert.public_key()), libtrust_key_id(other.public_key())]

    path.write_bytes(helpers.cert_pem(other) + helpers.cert_pem(signing_cert))
    with pytest.raises(ConfigError, match="does not belong to KEY_PATH's key"):
        make_app()


def use_jwks_header(config_dir):
    with open(config_dir / "config.py", "a", encoding="utf-8") as config_py:
        config_py.write('TOKEN_HEADER = "jwks"\n')


def test_in_jwks_mode_the_jwks_lists_exactly_the_kid_the_tokens_carry(make_app, config_dir):
    """The README's registry 3 recipe: TOKEN_HEADER = "jwks", the registry's auth.token.jwks
    the output of `keys jwks`; registry 3 looks the token's kid up in that file verbatim."""
    use_jwks_header(config_dir)
    code, output = run(config_dir, "keys", "jwks")
    assert code == 0, output
    (published,) = json.loads(output)["keys"]
    token = make_app().test_client().get(f"/v2/token?service={helpers.SERVICE}").get_json()["token"]
    header = jwt.get_unverified_header(token)
    assert "x5c" not in header
    assert header["kid"] == published["kid"]
    key = jwt.PyJWK(published)
    claims = jwt.decode(token, key.key, algorithms=[published["alg"]], audience=helpers.SERVICE)
    assert claims["iss"] == helpers.ISSUER


def test_in_jwks_mode_the_kid_is_the_jwk_thumbprint(config_dir, signing_cert):
    use_jwks_header(config_dir)
    (published,) = json.loads(run(config_dir, "keys", "jwks")[1])["keys"]
    assert published["kid"] == jwk_thumbprint(signing_cert.public_key())
    assert published["kid"] != libtrust_key_id(signing_cert.public_key())


def test_rotating_in_jwks_mode(make_app, config_dir, signing_cert):
    """The README's rotation recipe with a JWKS: both kids listed, the new key's tokens found."""
    use_jwks_header(config_dir)
    new_key, new_cert = config_dir / "token-2.key", config_dir / "token-2.crt"
    assert run(config_dir, "keys", "generate", "--key", new_key, "--cert", new_cert)[0] == 0
    code, output = run(
        config_dir, "keys", "jwks", "--cert", config_dir / "token.crt", "--cert", new_cert
    )
    assert code == 0, output
    kids = [k["kid"] for k in json.loads(output)["keys"]]
    new_public = load_private_key(new_key).public_key()
    assert kids == [jwk_thumbprint(signing_cert.public_key()), jwk_thumbprint(new_public)]

    app = make_app(KEY_PATH="token-2.key", CERT_PATH="token-2.crt")
    token = app.test_client().get(f"/v2/token?service={helpers.SERVICE}").get_json()["token"]
    assert jwt.get_unverified_header(token)["kid"] == kids[1]


def test_a_jwk_keeps_fixed_length_coordinates_when_its_kid_does_not(tmp_path):
    """Registry 3 (go-jose) refuses a JWK whose x or y is not the curve's full length; the kid
    is the thumbprint the registry computes, from minimal-length coordinates."""
    key = ec.derive_private_key(43, ec.SECP256R1())  # its y starts with a zero byte
    (tmp_path / "c.crt").write_bytes(helpers.cert_pem(helpers.make_cert(key)))
    code, output = run(
        tmp_path, "keys", "jwks", "--cert", tmp_path / "c.crt",
        env={"AUTH_SERVICE_TOKEN_HEADER": "jwks"},
    )  # fmt: skip
    assert code == 0, output
    (published,) = json.loads(output)["keys"]
    assert len(published["x"]) == len(published["y"]) == 43
    assert b64url_int(published["y"]) == key.public_key().public_numbers().y
    assert published["kid"] == jwk_thumbprint(key.public_key())


def test_jwks_without_config_py_follows_the_environment(tmp_path, signing_cert):
    (tmp_path / "c.crt").write_bytes(helpers.cert_pem(signing_cert))
    public = signing_cert.public_key()
    for env, kid in [
        ({}, libtrust_key_id(public)),
        ({"AUTH_SERVICE_TOKEN_HEADER": "jwks"}, jwk_thumbprint(public)),
    ]:
        code, output = run(tmp_path, "keys", "jwks", "--cert", tmp_path / "c.crt", env=env)
        assert code == 0, output
        assert [k["kid"] for k in json.loads(output)["keys"]] == [kid]


@pytest.mark.parametrize("where", ["config.py", "environment"])
def test_jwks_with_a_bad_token_header_is_one_line(tmp_path, config_dir, where):
    env = {}
    if where == "config.py":
        with open(config_dir / "config.py", "a", encoding="utf-8") as config_py:
            config_py.write('TOKEN_HEADER = "kid"\n')
        directory, expected = config_dir, f"Error: {config_dir}/config.py: TOKEN_HEADER: must be"
    else:
        env = {"AUTH_SERVICE_TOKEN_HEADER": "kid"}
        directory, expected = tmp_path, "Error: environment AUTH_SERVICE_TOKEN_HEADER: must be"
    code, output = run(directory, "keys", "jwks", "--cert", config_dir / "token.crt", env=env)
    assert code == 1 and output.startswith(expected), output
    assert len(output.splitlines()) == 1


def test_jwks_warns_when_the_tokens_carry_x5c(config_dir, caplog):
    """x5c mode with a certificate: a registry 3 trusting only this JWKS would refuse them."""
    with caplog.at_level(logging.WARNING, logger="auth_service"):
        assert run(config_dir, "keys", "jwks")[0] == 0
    assert 'set TOKEN_HEADER = "jwks"' in caplog.text
    caplog.clear()
    use_jwks_header(config_dir)
    with caplog.at_level(logging.WARNING, logger="auth_service"):
        assert run(config_dir, "keys", "jwks")[0] == 0
    assert "TOKEN_HEADER" not in caplog.text
