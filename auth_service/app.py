"""The app factory: settings, signer and live configuration wired into one Flask app."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from auth_service.files.live_config import LiveConfig
from auth_service.files.revocations import load_revocations
from auth_service.files.settings import load_settings
from auth_service.files.users import UNKNOWN_NAME_KEY_LABEL
from auth_service.files.watched import WatchedFiles
from auth_service.http import operations, proxy_decision, token_endpoint
from auth_service.passwords.bcrypt_turns import BcryptGate, default_queue_limit
from auth_service.passwords.credential_cache import CredentialCache
from auth_service.passwords.login import PasswordChecker
from auth_service.passwords.throttle import LoginThrottle, shared_store
from auth_service.records import metrics
from auth_service.records.audit import AuditLog
from auth_service.service import TokenService
from auth_service.shared.state import SharedState
from auth_service.tokens.refresh import KEY_LABEL as REFRESH_KEY_LABEL
from auth_service.tokens.refresh import RefreshTokenCodec
from auth_service.tokens.signer import TokenSigner
from auth_service.tokens.token_cache import TokenCache


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from the config directory (``$AUTH_SERVICE_CONFIG_DIR`` or ``config/``).

    ``test_config`` overrides settings by name (``ISSUER``, ``SERVICE``, ...); its ``CONFIG_DIR``
    picks the directory. Raises :class:`auth_service.errors.ConfigError` on bad configuration.
    """
    # Before anything counts, and in uWSGI's master before it forks the workers.
    metrics.set_up()
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
    # With REDIS_URL: throttle buckets and revocations shared by every instance; else None.
    shared = SharedState.from_settings(settings)
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
            shared_store() if shared is None else shared.throttle_buckets(shared_store()),
            address_burst=settings.login_throttle_address_burst,
            address_per_minute=settings.login_throttle_address_per_minute,
        ),
    )

    app = Flask(__name__)
    app.config.from_mapping(overrides)
    service = TokenService(settings, signer, live, refresh, revocations, passwords, shared)
    audit = AuditLog(settings.audit_log_path, enabled=settings.audit_log != "")
    token_endpoint.init_app(app, service, audit)
    # Proxy mode's decision endpoint, used only when nginx is set up for it (AUTH_MODE=proxy).
    proxy_decision.init_app(app, service, audit, TokenCache())
    operations.init_app(app)
    return app
