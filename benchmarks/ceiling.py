"""The ceiling: the least a token endpoint can do on this stack.

A minimal Flask app that answers every ``GET /v2/token`` with one ES256 token signed at start-up
with the config directory's key. uWSGI serves it with the project's ``uwsgi.ini`` (the benchmarks
add ``--module benchmarks.ceiling:app``) behind the project's nginx config, so the gap between
this and the real service is the service's own work.
"""

from __future__ import annotations

import json

from flask import Flask, Response

from auth_service.settings import load_settings
from auth_service.tokens import TokenSigner

_settings = load_settings()
_signer = TokenSigner.from_files(
    _settings.key_path, _settings.cert_path, _settings.issuer, _settings.token_lifetime
)
_token = _signer.issue(
    "", _settings.services[0], [{"type": "repository", "name": "public/app", "actions": ["pull"]}]
).token
_BODY = json.dumps({"token": _token, "access_token": _token})

app = Flask(__name__)


@app.get("/v2/token")
def token() -> Response:
    """The preloaded token, whatever was asked."""
    return Response(_BODY, mimetype="application/json")
