"""The ceiling: the least a token endpoint can do on this stack.

A minimal Flask app that answers every ``GET /v2/token`` with an ES256 token of preloaded claims,
signed for that request with the config directory's key (loaded once). Signing is the one piece
of work no token server can skip: issue 7 measured its ceiling as "a Flask app that only signs a
preloaded ES256 token" (about 4,500 a second there), and a token reused for every request would
not be a token server at all; returning one fixed body instead runs about 1.8 times as fast.

For proxy mode (``benchmarks/proxy.py``) it also answers nginx's ``auth_request`` at
``/auth/proxy``: 200 with a token in ``X-Registry-Authorization``, whatever was asked. There the
token is signed once, since reusing a token is what the real decision endpoint does for a warm
cache; what is left is the least any decision endpoint does: be asked, and answer.
uWSGI serves it with the project's ``uwsgi.ini`` (the benchmarks
add ``--module benchmarks.ceiling:app``) behind the project's nginx config, so the gap between
this and the real service is the service's own work.
"""

from __future__ import annotations

import json

from flask import Flask, Response

from auth_service.files.settings import load_settings
from auth_service.tokens.signer import TokenSigner

_settings = load_settings()
_signer = TokenSigner.from_files(
    _settings.key_path, _settings.cert_path, _settings.issuer, _settings.token_lifetime
)
_AUDIENCE = _settings.services[0]
_ACCESS = [{"type": "repository", "name": "public/app", "actions": ["pull"]}]

app = Flask(__name__)


@app.get("/v2/token")
def token() -> Response:
    """The preloaded claims, freshly signed, whatever was asked."""
    token = _signer.issue("", _AUDIENCE, _ACCESS).token
    return Response(
        json.dumps({"token": token, "access_token": token}), mimetype="application/json"
    )


_DECISION_TOKEN = "Bearer " + _signer.issue("", _AUDIENCE, _ACCESS).token


@app.get("/auth/proxy")
def decision() -> Response:
    """Every request allowed, with the one token (proxy mode's decision, at its least)."""
    response = Response(b"", 200)
    response.headers["X-Registry-Authorization"] = _DECISION_TOKEN
    return response
