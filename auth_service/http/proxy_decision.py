"""Proxy mode's decision endpoint: nginx's ``auth_request`` asks it about each registry request.

nginx (nginx/auth-proxy-locations.conf) calls ``/auth/proxy`` with the original request's method
and URI as the uwsgi variables ``PROXY_METHOD`` and ``PROXY_URI``, and its ``Authorization``
header and client address as usual. The answer, decided by :mod:`auth_service.proxy`:

- **200** with ``X-Registry-Authorization: Bearer <token>``, which nginx sends to the registry as
  ``Authorization``; for a request that already carries a Bearer token, that header as it is.
- **401 or 403**, the only refusals ``auth_request`` passes on, with the refusal's real status in
  ``X-Refusal-Status`` (a 429 or 503 of the login path is answered 403 here), its body, in the
  registry's JSON error format, in ``X-Refusal-Body`` (``auth_request`` drops the body; nginx's
  error page for the refusal sends this), and the Basic challenge and ``Retry-After`` as the
  table of refusals says. The body is sent too, for whoever reads the answer directly.

Every decision is recorded as a token request is: an audit line (``"event": "proxy"``, with the
method and URI) and the token requests' metrics. A Bearer request is not a decision: neither.
Like the token endpoint, it is plain WSGI middleware in front of the Flask app.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from auth_service.errors import INTERNAL_ERROR, ISSUED, AuditUnavailable, Refused
from auth_service.http.responses import Reply, StartResponse, basic_challenge, refusal_reply
from auth_service.http.token_endpoint import WSGIApp
from auth_service.proxy import (
    ProxyDecider,
    ProxyGrant,
    ProxyRequest,
    is_bearer,
    read_proxy_request,
)
from auth_service.records import metrics
from auth_service.records.audit import AuditLog, token_line
from auth_service.service import TokenService
from auth_service.tokens.token_cache import TokenCache

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger(__name__)

PROXY_PATH = "/auth/proxy"
# uwsgi variables nginx sets (a client's headers arrive as HTTP_*, so it cannot set these).
METHOD_VARIABLE = "PROXY_METHOD"
URI_VARIABLE = "PROXY_URI"
AUTHORIZATION_HEADER = "X-Registry-Authorization"
STATUS_HEADER = "X-Refusal-Status"
BODY_HEADER = "X-Refusal-Body"
# The statuses auth_request passes on; any other would become nginx's 500.
_PASSED_ON = (401, 403)


class ProxyDecisionEndpoint:
    """WSGI middleware: answers ``/auth/proxy``, hands every other request to ``fallback``."""

    def __init__(
        self, decider: ProxyDecider, audit: AuditLog, fallback: WSGIApp, realm: str
    ) -> None:
        self.decider = decider
        self.audit = audit
        self.fallback = fallback
        self._challenge = basic_challenge(realm)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PROXY_PATH:
            return self.fallback(environ, start_response)
        started = time.perf_counter()
        try:
            reply = self.answer(environ, started)
        except Exception:
            log.exception("unhandled error")
            reply = self._refusal_reply_for_nginx(_internal_error())
        return reply.send(start_response, with_body=environ.get("REQUEST_METHOD") != "HEAD")

    def answer(self, environ: dict[str, Any], started: float) -> Reply:
        """Decide the request nginx describes in ``environ``, record it, answer nginx."""
        authorization = environ.get("HTTP_AUTHORIZATION")
        if is_bearer(authorization):
            assert authorization is not None
            return Reply(200, None, (AUTHORIZATION_HEADER, authorization))
        method, uri = environ.get(METHOD_VARIABLE), environ.get(URI_VARIABLE)
        if not method or not uri:
            log.error(
                "%s was called without %s and %s: nginx must set them (auth-proxy-locations.conf)",
                PROXY_PATH,
                METHOD_VARIABLE,
                URI_VARIABLE,
            )
            return self._refusal_reply_for_nginx(_internal_error())
        request = read_proxy_request(method, uri, authorization, environ.get("REMOTE_ADDR"))
        try:
            try:
                grant = self.decider.decide(request)
            except Refused as refused:
                return self._refuse(request, refused, started)
            return self._issue(request, grant, started)
        except AuditUnavailable as stuck:
            log.warning("refused a proxied request: %s", stuck)
            return self._refuse(request, stuck, started)

    def _record(self, request: ProxyRequest, line: dict[str, Any]) -> None:
        line["event"] = "proxy"
        line["uri"] = request.uri
        line["route"] = request.required.route
        self.audit.write(line)

    def _refuse(self, request: ProxyRequest, refused: Refused, started: float) -> Reply:
        row = refused.refusal
        seconds = time.perf_counter() - started
        if row.audit_outcome is not None:
            line = token_line(
                request,
                row.audit_outcome,
                row.status,
                seconds,
                user=request.user,
                service=None,
                reason=str(refused),
            )
            self._record(request, line)
        if row.metric_outcome is not None:
            metrics.observe_token_request(row.metric_outcome, seconds)
        return self._refusal_reply_for_nginx(refused)

    def _issue(self, request: ProxyRequest, grant: ProxyGrant, started: float) -> Reply:
        reply = Reply(200, None, (AUTHORIZATION_HEADER, "Bearer " + grant.issued.token))
        seconds = time.perf_counter() - started
        line = token_line(
            request,
            ISSUED,
            200,
            seconds,
            user=grant.subject or None,
            service=grant.audience,
            access=[g.scope() for g in grant.grants if g.actions],
            token_id=grant.issued.token_id,
        )
        line["reused"] = grant.reused
        self._record(request, line)
        metrics.observe_token_request(ISSUED, seconds)
        metrics.count_actions(
            [action for r in request.required.requests for action in r.actions],
            [action for g in grant.grants for action in g.actions],
        )
        return reply

    def _refusal_reply_for_nginx(self, refused: Refused) -> Reply:
        """The refusal as the table says, with what nginx needs to send it: a status
        auth_request passes on, and the real status and the body in headers."""
        reply = refusal_reply(refused, self._challenge)
        real = reply.status
        reply.headers.append((STATUS_HEADER, str(real)))
        reply.headers.append((BODY_HEADER, reply.body.decode("ascii")))
        if real not in _PASSED_ON:
            reply.status = 403
        return reply


class _InternalError(Refused):
    refusal = INTERNAL_ERROR


def _internal_error() -> Refused:
    return _InternalError()


def init_app(app: Flask, service: TokenService, audit: AuditLog, cache: TokenCache) -> None:
    """Put the decision endpoint in front of ``app``'s WSGI callable."""
    decider = ProxyDecider(service, cache)
    app.wsgi_app = ProxyDecisionEndpoint(  # type: ignore[method-assign]
        decider, audit, app.wsgi_app, service.settings.realm
    )
