"""The app factory: settings, signer and live configuration wired into one Flask app."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from . import views
from .live_config import LiveConfig
from .service import TokenService
from .settings import load_settings
from .tokens import TokenSigner


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from the config directory (``$AUTH_SERVICE_CONFIG_DIR`` or ``config/``).

    ``test_config`` overrides settings by name (``ISSUER``, ``SERVICE``, ...); its ``CONFIG_DIR``
    picks the directory. Raises :class:`auth_service.errors.ConfigError` on bad configuration.
    """
    overrides = dict(test_config or {})
    settings = load_settings(overrides.pop("CONFIG_DIR", None), overrides=overrides)
    signer = TokenSigner.from_files(
        settings.key_path, settings.cert_path, settings.issuer, settings.token_lifetime
    )
    live = LiveConfig(settings.users_path, settings.repositories_path, settings.bcrypt_cost)

    app = Flask(__name__)
    app.config.from_mapping(overrides)
    app.extensions[views.EXTENSION] = TokenService(settings, signer, live)
    views.init_app(app)
    return app
