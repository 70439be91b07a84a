"""The WSGI entry point for uWSGI: ``module = auth_service.wsgi:app``."""

from __future__ import annotations

import logging
import sys

from auth_service import create_app
from auth_service.errors import ConfigError

logging.basicConfig(
    level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
)

try:
    app = create_app()
except ConfigError as exc:
    # One line an operator can act on, not a traceback; uWSGI's need-app then stops start-up.
    logging.getLogger("auth_service").critical("configuration error: %s", exc)
    raise SystemExit(1) from None
