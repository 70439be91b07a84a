"""``auth-service keys generate`` and ``keys jwks``."""

import base64
import datetime as dt
import json
import stat

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from auth_service.errors import ConfigError
from auth_service.tokens import libtrust_key_id, load_certificate, load_private_key

from . import helpers
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
