"""The token endpoint (``/v2/token`` and ``/auth/token``): read, decide, record, answer.

It is the service's one hot path, so it is plain WSGI middleware rather than a Flask view:
Flask's per-request machinery (two contexts, routing, signals, the session, a Response object)
would cost more than signing the token does. :class:`TokenEndpoint` wraps the Flask app's WSGI
callable and answers the token paths itself; everything else (``/health``, ``/metrics``, the
JSON 404s) is Flask's, through :func:`init_app`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException

from auth_service.errors import ISSUED, AuditUnavailable, MethodNotAllowed, Refused
from auth_service.http import EXTENSION
from auth_service.http.request import TokenRequest, read_token_request
from auth_service.http.responses import (
    Reply,
    StartResponse,
    basic_challenge,
    http_error_response,
    internal_error_reply,
    internal_error_response,
    refusal_reply,
    token_document,
)
from auth_service.records import metrics
from auth_service.records.audit import AuditLog, token_line
from auth_service.service import TokenGrant, TokenService

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

# /auth/token is where a registry with `autoredirect: true` points clients.
TOKEN_PATHS = frozenset({"/v2/token", "/auth/token"})
ALLOWED_METHODS = "GET, HEAD, POST, OPTIONS"
# Token requests are small; anything larger is refused (413) before it is read.
MAX_BODY_BYTES = 64 * 1024

WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class TokenEndpoint:
    """WSGI middleware: answers the token paths, hands every other request to ``fallback``."""

    def __init__(
        self, service: TokenService, audit: AuditLog, max_body: int, fallback: WSGIApp
    ) -> None:
        self.service = service
        self.audit = audit
        self.max_body = max_body
        self.fallback = fallback
        self._challenge = basic_challenge(service.settings.realm)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") not in TOKEN_PATHS:
            return self.fallback(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        started = time.perf_counter()
        try:
            if method in ("GET", "HEAD", "POST"):
                reply = self.answer(read_token_request(environ, self.max_body), started)
            elif method == "OPTIONS":
                reply = Reply(200, None, ("Allow", ALLOWED_METHODS))
            else:
                refused = MethodNotAllowed(method, ALLOWED_METHODS)
                reply = refusal_reply(refused, self._challenge)
        except Exception:
            log.exception("unhandled error")
            reply = internal_error_reply()
        return reply.send(start_response, with_body=method != "HEAD")

    def answer(self, request: TokenRequest, started: float) -> Reply:
        """Decide ``request``, record the outcome in the audit log and the metrics, answer.

        ``started``: the ``time.perf_counter()`` when the request arrived, for its latency.
        Nothing is answered unrecorded: if the audit log takes no line, the request is refused
        as :data:`auth_service.errors.AUDIT_UNAVAILABLE`, whatever was decided.
        """
        try:
            try:
                grant = self.decide(request)
            except Refused as refused:
                return self._refuse(request, refused, started)
            return self._issue(request, grant, started)
        except AuditUnavailable as stuck:
            log.warning("refused a token request: %s", stuck)
            return self._refuse(request, stuck, started)

    def decide(self, request: TokenRequest) -> TokenGrant:
        """The token for ``request``; raises a :class:`auth_service.errors.Refused`."""
        if request.malformed is not None:
            raise request.malformed
        if request.refresh_token is not None:
            return self.service.grant_refreshed(
                request.refresh_token, request.service, request.scopes, request.offline
            )
        assert request.credentials is not None
        return self.service.grant_token(
            request.credentials,
            request.service,
            request.scopes,
            offline=request.offline,
            client=request.client,
        )

    def _refuse(self, request: TokenRequest, refused: Refused, started: float) -> Reply:
        """Record a refusal as its row says (audit line first), and answer it."""
        row = refused.refusal
        seconds = time.perf_counter() - started
        if row.audit_outcome is not None:
            self.audit.write(
                token_line(
                    request,
                    row.audit_outcome,
                    row.status,
                    seconds,
                    user=request.user,
                    service=request.service,
                    reason=str(refused),
                )
            )
        if row.metric_outcome is not None:
            metrics.observe_token_request(row.metric_outcome, seconds)
        return refusal_reply(refused, self._challenge)

    def _issue(self, request: TokenRequest, grant: TokenGrant, started: float) -> Reply:
        """Record a token (audit line first: no line, no token), and answer with it."""
        reply = Reply(200, token_document(grant, with_scope=request.method == "POST"))
        seconds = time.perf_counter() - started
        self.audit.write(
            token_line(
                request,
                ISSUED,
                200,
                seconds,
                user=grant.subject or None,
                service=grant.audience,
                access=[g.scope() for g in grant.grants if g.actions],
                token_id=grant.issued.token_id,
            )
        )
        metrics.observe_token_request(ISSUED, seconds)
        metrics.count_actions(
            [action for r in grant.requests for action in r.actions],
            [action for g in grant.grants for action in g.actions],
        )
        return reply


def init_app(app: Flask, service: TokenService, audit: AuditLog) -> None:
    """Put the token endpoint in front of ``app`` and make Flask's own errors JSON."""
    # Flask's defaults are None (no limit) and 500 kB; ours are stricter.
    for name in ("MAX_CONTENT_LENGTH", "MAX_FORM_MEMORY_SIZE"):
        if app.config.get(name) in (None, app.default_config.get(name)):
            app.config[name] = MAX_BODY_BYTES
    app.extensions[EXTENSION] = service
    app.wsgi_app = TokenEndpoint(  # type: ignore[method-assign]
        service, audit, app.config["MAX_CONTENT_LENGTH"], app.wsgi_app
    )
    app.register_error_handler(HTTPException, http_error_response)
    app.register_error_handler(Exception, internal_error_response)
