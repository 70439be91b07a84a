"""Signing: libtrust key IDs, algorithms, headers and claims, and key/certificate checks."""

import base64
import datetime as dt
import hashlib
import json
import logging

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from auth_service.errors import ConfigError
from auth_service.tokens.signer import (
    TokenSigner,
    jwk_thumbprint,
    libtrust_key_id,
    load_certificate,
)

from .. import helpers


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


# RFC 7638 section 3.1's example RSA key and the thumbprint the RFC prints for it.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKR"
    "XjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAt"
    "aSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPk"
    "sINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)


def test_jwk_thumbprint_of_the_rfc_7638_and_spec_example_keys():
    rsa_key = rsa.RSAPublicNumbers(65537, b64url_int(RFC7638_N)).public_key()
    assert jwk_thumbprint(rsa_key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    spec_key = ec.EllipticCurvePublicNumbers(
        b64url_int("m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q"),
        b64url_int("dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc"),
        ec.SECP256R1(),
    ).public_key()
    assert jwk_thumbprint(spec_key) == "8qjioA3ZA7ti2JIE7c-U8smBFuZolQZvhSHDPU3hhB8"


def _sha256_b64url(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "secret", [43, 379]
)  # P-256 keys whose y (43) or x (379) has a 0 byte first
def test_jwk_thumbprint_writes_ec_coordinates_as_registry_3_does(secret):
    """Registry 3's GetJWKThumbprint writes x and y without leading zero bytes (Go's
    big.Int.Bytes): for these keys that differs from RFC 7638's fixed-length form, and the
    registry's rootcertbundle lookup only finds the registry's value."""
    numbers = ec.derive_private_key(secret, ec.SECP256R1()).public_key().public_numbers()

    def coordinate(value: int, length: int) -> str:
        return base64.urlsafe_b64encode(value.to_bytes(length, "big")).rstrip(b"=").decode()

    def members(length_x: int, length_y: int) -> str:
        x, y = coordinate(numbers.x, length_x), coordinate(numbers.y, length_y)
        return f'{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}'

    minimal = members((numbers.x.bit_length() + 7) // 8, (numbers.y.bit_length() + 7) // 8)
    fixed_length = members(32, 32)
    assert minimal != fixed_length
    assert jwk_thumbprint(numbers.public_key()) == _sha256_b64url(minimal)


def _header(token: str) -> dict:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


@pytest.mark.parametrize("with_certificate", [True, False])
def test_jwks_header_is_the_thumbprint_kid_and_no_x5c(with_certificate):
    """Registry 3 checks x5c first, against rootcertbundle only: for a registry trusting a jwks
    file the token must carry no x5c, and a kid the JWKS lists (the JWK thumbprint)."""
    key = helpers.make_key()
    cert = helpers.make_cert(key) if with_certificate else None
    signer = TokenSigner(key, cert, helpers.ISSUER, 900, token_header="jwks")
    token = signer.issue("alice", helpers.SERVICE, []).token
    assert _header(token) == {"alg": "ES256", "typ": "JWT", "kid": jwk_thumbprint(key.public_key())}
    assert signer.key_id == jwk_thumbprint(key.public_key())
    jwt.decode(token, key.public_key(), algorithms=["ES256"], audience=helpers.SERVICE)
    assert signer.unusable_reason() is None


def test_x5c_header_is_the_libtrust_kid_and_the_certificate():
    """The default, for registry 2.8 (kid: libtrust ID) and 3.x (x5c) with a rootcertbundle."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = helpers.make_cert(key)
    token = TokenSigner(key, cert, helpers.ISSUER, 900, token_header="x5c").issue("", "s", []).token
    der = cert.public_bytes(serialization.Encoding.DER)
    assert _header(token) == {
        "alg": "RS256",
        "typ": "JWT",
        "kid": libtrust_key_id(key.public_key()),
        "x5c": [base64.b64encode(der).decode()],
    }


def test_an_unknown_token_header_is_refused():
    key = helpers.make_key()
    with pytest.raises(ValueError, match="token_header"):
        TokenSigner(key, None, helpers.ISSUER, 900, token_header="jwk")


@pytest.mark.parametrize(("token_header", "warned"), [("x5c", True), ("jwks", False)])
def test_no_certificate_is_worth_a_warning_only_for_x5c(tmp_path, caplog, token_header, warned):
    key_path = tmp_path / "token.key"
    key_path.write_bytes(helpers.key_pem(helpers.make_key()))
    with caplog.at_level(logging.WARNING, logger="auth_service"):
        TokenSigner.from_files(key_path, None, helpers.ISSUER, 900, token_header)
    assert ('TOKEN_HEADER = "jwks"' in caplog.text) is warned
    assert ("CERT_PATH is not set" in caplog.text) is warned


@pytest.mark.parametrize(
    ("setting", "header_names", "kid_of"),
    [
        (None, ["alg", "typ", "kid", "x5c"], libtrust_key_id),
        ("x5c", ["alg", "typ", "kid", "x5c"], libtrust_key_id),
        ("jwks", ["alg", "typ", "kid"], jwk_thumbprint),
        (" JWKS ", ["alg", "typ", "kid"], jwk_thumbprint),
    ],
)
def test_the_token_endpoint_signs_the_configured_header(
    make_app, signing_key, setting, header_names, kid_of
):
    overrides = {} if setting is None else {"TOKEN_HEADER": setting}
    response = make_app(**overrides).test_client().get(f"/v2/token?service={helpers.SERVICE}")
    header = _header(response.get_json()["token"])
    assert sorted(header) == sorted(header_names)
    assert header["kid"] == kid_of(signing_key.public_key())
