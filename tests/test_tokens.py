"""Signing: libtrust key IDs, algorithms, headers and claims, and key/certificate checks."""

import base64
import datetime as dt

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from auth_service.errors import ConfigError
from auth_service.tokens import TokenSigner, libtrust_key_id, load_certificate

from . import helpers


def b64url_int(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def test_libtrust_key_id_of_the_spec_example_key():
    """The JWK of the Distribution jwt.md example has the key ID the spec prints."""
    numbers = ec.EllipticCurvePublicNumbers(
        b64url_int("m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q"),
        b64url_int("dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc"),
        ec.SECP256R1(),
    )
    assert (
        libtrust_key_id(numbers.public_key())
        == "PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6"
    )


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [
        (ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (ec.generate_private_key(ec.SECP384R1()), "ES384"),
        (ec.generate_private_key(ec.SECP521R1()), "ES512"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
    ],
)
def test_algorithm_follows_the_key(key, algorithm):
    signer = TokenSigner(key, helpers.make_cert(key), helpers.ISSUER, 900)
    issued = signer.issue("alice", helpers.SERVICE, [])
    header = jwt.get_unverified_header(issued.token)
    assert header["alg"] == algorithm
    jwt.decode(issued.token, key.public_key(), algorithms=[algorithm], audience=helpers.SERVICE)


@pytest.mark.parametrize(
    "key",
    [
        ed25519.Ed25519PrivateKey.generate(),
        ec.generate_private_key(ec.SECP256K1()),
        rsa.generate_private_key(public_exponent=65537, key_size=1024),  # noqa: S505 (refusing it is the point)
    ],
)
def test_keys_registries_reject_are_refused(key):
    with pytest.raises(ConfigError):
        TokenSigner(key, None, helpers.ISSUER, 900)


def test_header_and_claims():
    key = helpers.make_key()
    cert = helpers.make_cert(key)
    signer = TokenSigner(key, cert, helpers.ISSUER, 600, clock=lambda: 1_800_000_000.7)
    access = [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    issued = signer.issue("alice", helpers.SERVICE, access)

    header = jwt.get_unverified_header(issued.token)
    assert header["typ"] == "JWT"
    assert header["kid"] == libtrust_key_id(key.public_key())
    der = cert.public_bytes(serialization.Encoding.DER)
    assert header["x5c"] == [base64.b64encode(der).decode()]
    assert "jwk" not in header

    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert claims == {
        "iss": helpers.ISSUER,
        "sub": "alice",
        "aud": helpers.SERVICE,
        "exp": 1_800_000_600,
        "nbf": 1_800_000_000,
        "iat": 1_800_000_000,
        "jti": claims["jti"],
        "access": access,
    }
    assert all(type(claims[k]) is int for k in ("exp", "nbf", "iat"))
    assert issued.expires_in == 600
    assert issued.issued_at_rfc3339 == "2027-01-15T08:00:00Z"


def test_no_certificate_means_kid_only():
    key = helpers.make_key()
    header = jwt.get_unverified_header(
        TokenSigner(key, None, helpers.ISSUER, 900).issue("", helpers.SERVICE, []).token
    )
    assert "x5c" not in header
    assert header["kid"] == libtrust_key_id(key.public_key())


def test_jti_is_unique():
    key = helpers.make_key()
    signer = TokenSigner(key, None, helpers.ISSUER, 900)
    tokens = [signer.issue("a", helpers.SERVICE, []).token for _ in range(1000)]
    jtis = {jwt.decode(t, options={"verify_signature": False})["jti"] for t in tokens}
    assert len(jtis) == 1000


def _write_cert(tmp_path, cert):
    path = tmp_path / "token.crt"
    path.write_bytes(helpers.cert_pem(cert))
    return path


def test_certificate_of_another_key_is_refused(tmp_path):
    key, other = helpers.make_key(), helpers.make_key()
    path = _write_cert(tmp_path, helpers.make_cert(other))
    with pytest.raises(ConfigError, match="does not belong"):
        load_certificate(path, key, dt.datetime.now(dt.UTC))


def test_expired_certificate_is_refused(tmp_path):
    key = helpers.make_key()
    path = _write_cert(tmp_path, helpers.make_cert(key, days=-1, start_days_ago=10))
    with pytest.raises(ConfigError, match="expired"):
        load_certificate(path, key, dt.datetime.now(dt.UTC))


def test_future_certificate_is_refused(tmp_path):
    key = helpers.make_key()
    path = _write_cert(tmp_path, helpers.make_cert(key, days=10, start_days_ago=-2))
    with pytest.raises(ConfigError, match="not valid before"):
        load_certificate(path, key, dt.datetime.now(dt.UTC))
