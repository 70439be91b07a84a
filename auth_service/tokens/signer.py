"""Signing: the key and certificate, the registry's key IDs, and the access tokens themselves.

How a token names its key depends on how the registry is told to trust it (``TOKEN_HEADER``):

* ``"x5c"`` (the default): ``kid``, the libtrust key ID registry 2.x looks up in its
  ``rootcertbundle``, and ``x5c``, the certificate itself, which registry 3.x (no libtrust IDs any
  more) checks against the same bundle.
* ``"jwks"``: ``kid`` only, the key's JWK thumbprint. Registry 3.x checks ``x5c`` against its
  ``rootcertbundle`` alone, with no fallback, so a registry that trusts only a ``jwks`` file
  refuses every token carrying one; without it, the ``kid`` is looked up in the JWKS file (which
  ``auth-service keys jwks`` writes with this ``kid``) and among the bundle's keys.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from auth_service.errors import ConfigError
from auth_service.files.settings import JWKS_HEADER, TOKEN_HEADERS, X5C_HEADER
from auth_service.records.json_text import wire_json
from auth_service.records.timestamps import rfc3339_seconds
from auth_service.tokens.encoding import b64url, b64url_uint

log = logging.getLogger(__name__)

# Registry 2.x (libtrust) verifies only RS256/384/512 and the ES alg matching the curve.
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_MIN_RSA_BITS = 2048
_CERT_WARNING_DAYS = 30

JWK_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def libtrust_key_id(public_key: Any) -> str:
    """The key ID registry 2.x computes: base32 of SHA-256(DER SubjectPublicKeyInfo)[:30].

    Written as twelve groups of four characters joined by ':'.
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def jwk_thumbprint(public_key: Any) -> str:
    """The key's SHA-256 JWK thumbprint (RFC 7638), written exactly as registry 3.x computes it.

    Registry 3.x indexes every ``rootcertbundle`` key by this value (``GetJWKThumbprint``), so a
    token whose ``kid`` is it is found there as well as in a JWKS file listing it. The registry
    writes EC coordinates without leading zero bytes (Go's ``big.Int.Bytes``) where RFC 7638
    keeps them fixed-length: for a key whose x or y starts with a zero byte (about 1 in 128
    P-256 keys) a standard RFC 7638 library gives another value, which the bundle lookup would
    miss.
    """
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        numbers = public_key.public_numbers()
        crv = JWK_CURVES.get(public_key.curve.name, public_key.curve.name)
        members = (
            f'{{"crv":"{crv}","kty":"EC","x":"{b64url_uint(numbers.x)}",'
            f'"y":"{b64url_uint(numbers.y)}"}}'
        )
    elif isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        members = f'{{"e":"{b64url_uint(numbers.e)}","kty":"RSA","n":"{b64url_uint(numbers.n)}"}}'
    else:
        raise TypeError(f"no JWK thumbprint for a {type(public_key).__name__}")
    return b64url(hashlib.sha256(members.encode("ascii")).digest())


def key_id(public_key: Any, token_header: str) -> str:
    """The ``kid`` tokens carry for this key with ``TOKEN_HEADER`` = ``token_header``."""
    if token_header == JWKS_HEADER:
        return jwk_thumbprint(public_key)
    return libtrust_key_id(public_key)


def algorithm_for(private_key: Any, source: str) -> str:
    """The JWS algorithm this key (or its public half) signs with, one every registry accepts."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        algorithm = _EC_ALGORITHMS.get(private_key.curve.name)
        if algorithm:
            return algorithm
        raise ConfigError(
            source,
            None,
            f"EC curve {private_key.curve.name} is not supported (use P-256, P-384 or P-521)",
        )
    if isinstance(private_key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if private_key.key_size < _MIN_RSA_BITS:
            raise ConfigError(
                source,
                None,
                f"RSA key of {private_key.key_size} bits is too short (at least {_MIN_RSA_BITS})",
            )
        return "RS256"
    raise ConfigError(source, None, "the registry accepts only EC (P-256/384/521) or RSA keys")


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), setting, f"cannot be read: {exc.strerror}") from None


def load_private_key(path: Path) -> Any:
    """Load a PEM private key (unencrypted), as ``KEY_PATH`` names it."""
    try:
        return serialization.load_pem_private_key(_read(path, "KEY_PATH"), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            str(path), "KEY_PATH", f"not an unencrypted PEM private key: {exc}"
        ) from None


def certificate_problem(cert: x509.Certificate, now: dt.datetime) -> str | None:
    """Why a registry would refuse ``cert`` at ``now`` (not yet valid, or expired), or None."""
    if now < cert.not_valid_before_utc:
        return f"is not valid before {cert.not_valid_before_utc}"
    if now >= cert.not_valid_after_utc:
        return f"expired on {cert.not_valid_after_utc}"
    return None


def load_certificate(path: Path, private_key: Any, now: dt.datetime) -> x509.Certificate:
    """Load the PEM certificate the registry trusts, and check it fits the key and is valid now.

    An expired certificate would make the registry reject every token carrying it, so it is
    refused at start-up rather than discovered by users.
    """
    try:
        cert = x509.load_pem_x509_certificate(_read(path, "CERT_PATH"))
    except ValueError as exc:
        raise ConfigError(str(path), "CERT_PATH", f"not a PEM certificate: {exc}") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) != private_key.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise ConfigError(str(path), "CERT_PATH", "certificate does not belong to KEY_PATH's key")
    problem = certificate_problem(cert, now)
    if problem is not None:
        raise ConfigError(str(path), "CERT_PATH", problem)
    if cert.not_valid_after_utc - now < dt.timedelta(days=_CERT_WARNING_DAYS):
        log.warning(
            "%s: certificate expires on %s; rotate it before then", path, cert.not_valid_after_utc
        )
    return cert


@dataclass(frozen=True)
class IssuedToken:
    """A signed token and the times the response reports."""

    token: str
    issued_at: int
    expires_in: int
    token_id: str = ""  # the jti claim: names the token in logs, and is no secret

    @property
    def issued_at_rfc3339(self) -> str:
        """``issued_at`` as RFC 3339 in UTC with a ``Z``: clients decode it as a Go time.Time."""
        return rfc3339_seconds(self.issued_at)


class TokenSigner:
    """Signs access tokens with one key; the key, header and issuer are fixed at start-up.

    ``token_header`` (``TOKEN_HEADER``) says which registry configuration the header is made
    for: ``"x5c"``, the libtrust ``kid`` and (with a certificate) ``x5c``, for a registry that
    trusts a ``rootcertbundle``; ``"jwks"``, only a ``kid`` that is the key's JWK thumbprint,
    for registry 3.x trusting a ``jwks`` file.
    """

    def __init__(
        self,
        private_key: Any,
        certificate: x509.Certificate | None,
        issuer: str,
        lifetime: int,
        clock: Callable[[], float] = time.time,
        source: str = "KEY_PATH",
        token_header: str = X5C_HEADER,
    ) -> None:
        if token_header not in TOKEN_HEADERS:
            raise ValueError(f"token_header must be one of {TOKEN_HEADERS}, not {token_header!r}")
        self._key = private_key
        self.certificate = certificate
        self.algorithm = algorithm_for(private_key, source)
        self.token_header = token_header
        self.key_id = key_id(private_key.public_key(), token_header)
        self.headers: dict[str, Any] = {"typ": "JWT", "kid": self.key_id}
        # Registry 3.x tries x5c first, against its rootcertbundle only: in "jwks" mode it must
        # be absent for the kid to be looked up at all.
        if certificate is not None and token_header == X5C_HEADER:
            der = certificate.public_bytes(serialization.Encoding.DER)
            self.headers["x5c"] = [base64.b64encode(der).decode("ascii")]
        self.issuer = issuer
        self.lifetime = lifetime
        self._clock = clock
        # The header never changes: encoded once here, not on every token.
        header = wire_json({"alg": self.algorithm, **self.headers})
        self._header_segment = b64url(header.encode())
        self._sign = jwt.get_algorithm_by_name(self.algorithm).sign

    @classmethod
    def from_files(
        cls,
        key_path: Path,
        cert_path: Path | None,
        issuer: str,
        lifetime: int,
        token_header: str = X5C_HEADER,
    ) -> TokenSigner:
        """Load and check the key (and certificate) once, for the life of the process."""
        key = load_private_key(key_path)
        algorithm_for(key, str(key_path))  # fail with the file's name, not a setting's
        cert = None
        if cert_path is not None:
            cert = load_certificate(cert_path, key, dt.datetime.now(dt.UTC))
        elif token_header == X5C_HEADER:
            log.warning(
                "CERT_PATH is not set: tokens carry only a libtrust kid, which registry 2.x "
                "finds in its rootcertbundle and registry 3.x only in a jwks file from "
                '`auth-service keys jwks`; for registry 3.x set TOKEN_HEADER = "jwks" (or '
                "CERT_PATH, for x5c)"
            )
        return cls(key, cert, issuer, lifetime, token_header=token_header)

    def unusable_reason(self) -> str | None:
        """Why a token signed now would be refused, or None: the health check.

        The certificate must be valid now, and a token signed through :meth:`issue` must verify
        with the key's public half.
        """
        if self.certificate is not None:
            now = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
            problem = certificate_problem(self.certificate, now)
            if problem is not None:
                return f"the certificate {problem}"
        try:
            probe = self.issue("", "health-check", [])
            jwt.decode(
                probe.token,
                self._key.public_key(),
                algorithms=[self.algorithm],
                # Only the signature: the claims are the ones just made, on this signer's clock.
                options={
                    "verify_aud": False,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except Exception as exc:  # whatever breaks signing, health reports it
            return f"the key cannot sign: {exc}"
        return None

    def derive_secret(self, label: bytes) -> bytes:
        """A secret for another purpose (``label``), derived from the signing key: every
        instance with the same key derives the same secret, and rotating the key changes it."""
        der = self._key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return hmac.new(der, label, hashlib.sha256).digest()

    def issue(self, subject: str, audience: str, access: Sequence[dict[str, Any]]) -> IssuedToken:
        """A signed access token for ``subject`` at registry ``audience`` with ``access``."""
        now = int(self._clock())
        token_id = secrets.token_urlsafe(18)
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,  # one string: registry 2.x rejects a list
            "exp": now + self.lifetime,
            "nbf": now,
            "iat": now,
            "jti": token_id,
            "access": list(access),
        }
        payload = b64url(wire_json(claims).encode())
        signing_input = f"{self._header_segment}.{payload}".encode("ascii")
        signature = b64url(self._sign(signing_input, self._key))  # JWS form: raw r||s for EC
        return IssuedToken(
            f"{self._header_segment}.{payload}.{signature}", now, self.lifetime, token_id
        )


def generate_signing_pair(common_name: str, days: int) -> tuple[bytes, bytes]:
    """A new EC P-256 key and a self-signed certificate for it, both PEM.

    The certificate goes in the registry's ``rootcertbundle``; P-256/ES256 is accepted by every
    registry version.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)
