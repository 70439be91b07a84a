"""Signing keys for operators: a new key and certificate on disk, and the JWKS of certificates.

The cryptography itself is :mod:`.signer`'s: :func:`.signer.generate_signing_pair` makes the
pair, :func:`.signer.key_id` names a key as the tokens' ``kid`` header does for a
``TOKEN_HEADER``, and :func:`.signer.algorithm_for` is the algorithm the service signs with.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from auth_service.errors import ConfigError
from auth_service.files.atomic import write_atomic
from auth_service.files.settings import (
    CONFIG_FILE,
    ENV_PREFIX,
    X5C_HEADER,
    config_dir_from_env,
    load_settings,
    parse_token_header,
)
from auth_service.tokens.encoding import b64url_uint
from auth_service.tokens.signer import (
    JWK_CURVES,
    algorithm_for,
    generate_signing_pair,
    key_id,
)

log = logging.getLogger(__name__)

KEY_FILE_MODE = 0o600
CERT_FILE_MODE = 0o644


def write_signing_pair(
    key_path: Path, cert_path: Path, common_name: str, days: int, force: bool = False
) -> x509.Certificate:
    """Write a new EC P-256 key (mode 0600) and its self-signed certificate; return the latter.

    Raises FileExistsError if either file exists, unless ``force``.
    """
    if not force:
        for path in (key_path, cert_path):
            if path.exists():
                raise FileExistsError(f"{path} exists (--force replaces it)")
    key_pem, cert_pem = generate_signing_pair(common_name, days)
    write_atomic(key_path, key_pem, KEY_FILE_MODE)
    write_atomic(cert_path, cert_pem, CERT_FILE_MODE)
    return x509.load_pem_x509_certificate(cert_pem)


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file (one certificate, or a bundle of several)."""
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise ConfigError(str(path), None, f"cannot be read: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(str(path), None, f"not a PEM certificate: {exc}") from None


def jwk(public_key: Any, source: str, token_header: str) -> dict[str, str]:
    """The JSON Web Key of a public key, ``kid`` being the one tokens signed with it carry when
    ``TOKEN_HEADER`` is ``token_header``.

    The coordinates are fixed-length, as RFC 7518 asks: registry 3.x refuses a JWK without.
    """
    algorithm = algorithm_for(public_key, source)  # refuses keys the service cannot sign with
    kid = key_id(public_key, token_header)
    key: dict[str, str] = {"kid": kid, "use": "sig", "alg": algorithm}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        numbers = public_key.public_numbers()
        size = (public_key.curve.key_size + 7) // 8
        key.update(
            kty="EC",
            crv=JWK_CURVES[public_key.curve.name],
            x=b64url_uint(numbers.x, size),
            y=b64url_uint(numbers.y, size),
        )
    else:
        assert isinstance(public_key, rsa.RSAPublicKey)
        numbers = public_key.public_numbers()
        key.update(kty="RSA", n=b64url_uint(numbers.n), e=b64url_uint(numbers.e))
    return key


def configured_token_header(config_dir: Path | None = None) -> str:
    """``TOKEN_HEADER`` as the service reads it: ``config.py`` and ``AUTH_SERVICE_TOKEN_HEADER``.

    ``config_dir`` defaults to ``$AUTH_SERVICE_CONFIG_DIR``. Without a ``config.py``, the
    environment variable or the default, ``"x5c"``.
    """
    config_dir = config_dir_from_env() if config_dir is None else config_dir
    if not (config_dir / CONFIG_FILE).exists():
        name = ENV_PREFIX + "TOKEN_HEADER"
        if name not in os.environ:
            return X5C_HEADER
        try:
            return parse_token_header(os.environ[name])
        except ValueError as exc:
            raise ConfigError(f"environment {name}", None, str(exc)) from None
    settings = load_settings(config_dir)
    if settings.token_header == X5C_HEADER and settings.cert_path is not None:
        # The trap this JWKS would set: registry 3.x checks x5c against its rootcertbundle
        # only, so a registry trusting just this file refuses every token.
        log.warning(
            'TOKEN_HEADER is "x5c" and CERT_PATH is set: tokens carry x5c, which registry 3.x '
            "checks against its rootcertbundle only; for a registry trusting this JWKS, set "
            'TOKEN_HEADER = "jwks"'
        )
    return settings.token_header


def jwks(paths: Iterable[Path], token_header: str | None = None) -> dict[str, list[dict[str, str]]]:
    """A JWKS document (``{"keys": [...]}``) of the keys of every certificate in ``paths``, each
    ``kid`` being the one tokens carry when ``TOKEN_HEADER`` is ``token_header`` (by default,
    as configured: :func:`configured_token_header`)."""
    if token_header is None:
        token_header = configured_token_header()
    keys: dict[str, dict[str, str]] = {}
    for path in paths:
        for cert in load_certificates(path):
            entry = jwk(cert.public_key(), str(path), token_header)
            keys.setdefault(entry["kid"], entry)  # the same key twice is listed once
    return {"keys": list(keys.values())}
