"""The app factory: settings, signer and live configuration wired into one Flask app."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from . import operations, views
from .audit import AuditLog
from .bcrypt_gate import BcryptGate, default_queue_limit
from .credential_cache import CredentialCache
from .live_config import LiveConfig
from .login_throttle import LoginThrottle, shared_store
from .password_check import PasswordChecker
from .refresh_tokens import KEY_LABEL as REFRESH_KEY_LABEL
from .refresh_tokens import RefreshTokenCodec
from .revocations import load_revocations
from .service import TokenService
from .settings import load_settings
from .tokens import TokenSigner
from .users import UNKNOWN_NAME_KEY_LABEL
from .watched_file import WatchedFiles


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from the config directory (``$AUTH_SERVICE_CONFIG_DIR`` or ``config/``).

    ``test_config`` overrides settings by name (``ISSUER``, ``SERVICE``, ...); its ``CONFIG_DIR``
    picks the directory. Raises :class:`auth_service.errors.ConfigError` on bad configuration.
    """
    overrides = dict(test_config or {})
    settings = load_settings(overrides.pop("CONFIG_DIR", None), overrides=overrides)
    signer = TokenSigner.from_files(
        settings.key_path,
        settings.cert_path,
        settings.issuer,
        settings.token_lifetime,
        settings.token_header,
    )
    live = LiveConfig(
        settings.users_path,
        settings.repositories_path,
        settings.bcrypt_cost,
        name_key=signer.derive_secret(UNKNOWN_NAME_KEY_LABEL),
    )
    revocations = WatchedFiles(
        [settings.revocations_path], lambda: load_revocations(settings.revocations_path)
    )
    refresh = None
    if settings.refresh_token_lifetime:
        refresh = RefreshTokenCodec(
            signer.derive_secret(REFRESH_KEY_LABEL), settings.refresh_token_lifetime
        )

    passwords = PasswordChecker(
        settings.users_path,
        CredentialCache(settings.credential_cache_seconds, settings.credential_cache_size),
        BcryptGate(
            settings.bcrypt_concurrency,
            default_queue_limit() if settings.bcrypt_queue is None else settings.bcrypt_queue,
            settings.bcrypt_wait_seconds,
        ),
        LoginThrottle(
            settings.login_throttle_burst,
            settings.login_throttle_per_minute,
            shared_store(),
            address_burst=settings.login_throttle_address_burst,
            address_per_minute=settings.login_throttle_address_per_minute,
        ),
    )

    app = Flask(__name__)
    app.config.from_mapping(overrides)
    service = TokenService(settings, signer, live, refresh, revocations, passwords)
    audit = AuditLog(settings.audit_log_path, enabled=settings.audit_log != "")
    views.init_app(app, service, audit)
    operations.init_app(app)
    return app
