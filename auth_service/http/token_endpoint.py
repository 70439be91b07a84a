"""The token endpoint (``/v2/token`` and ``/auth/token``): HTTP in and out, as plain WSGI.

Every decision is in :mod:`auth_service.service`; this reads the request and writes the answer,
the metrics and the audit line. It is the service's one hot path, so it does not go through
Flask's request dispatch: Flask's per-request machinery (two contexts, routing, signals, the
session, a Response object) costs about 60 µs a request here, more than signing the token does.
:class:`TokenEndpoint` wraps the Flask app's WSGI callable and answers the token paths itself;
everything else (``/health``, ``/metrics``, the JSON 404s) is Flask's, through
:func:`init_app`.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask, Response
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Request

from auth_service.http.credentials import (
    Anonymous,
    BasicCredentials,
    Credentials,
    credentials_from_form,
    parse_authorization,
)
from auth_service.records import metrics
from auth_service.records.audit import AuditLog, AuditUnavailable, TokenRequestFacts
from auth_service.service import (
    BadRequest,
    Overloaded,
    Throttled,
    TokenGrant,
    TokenService,
    Unauthorized,
)

log = logging.getLogger(__name__)

EXTENSION = "auth_service"
# /auth/token is where a registry with `autoredirect: true` points clients.
TOKEN_PATHS = frozenset({"/v2/token", "/auth/token"})
ALLOWED_METHODS = "GET, HEAD, POST, OPTIONS"
FORM_TYPE = "application/x-www-form-urlencoded"
RETRY_SOON = ("Retry-After", "1")  # with a 503: nginx holds it and tries once more
# Token requests are small; anything larger is refused (413) before it is read.
MAX_BODY_BYTES = 64 * 1024

# One encoder for every body: json.dumps with options builds a new one on each call.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def error_document(code: str, message: str) -> dict[str, Any]:
    """The registry's own error format, which every client knows how to show."""
    return {"errors": [{"code": code, "message": message, "detail": None}]}


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    """A Flask response of compact JSON that no cache keeps (for the Flask-served pages)."""
    return Response(
        _compact_json(body), status, {"Cache-Control": "no-store"}, mimetype="application/json"
    )


@functools.cache
def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


class Reply:
    """A finished answer of the token endpoint: status, headers, and the body's bytes."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, document: dict[str, Any] | None, *extra: tuple[str, str]):
        self.status = status
        self.body = b"" if document is None else _compact_json(document).encode()
        self.headers = [("Content-Length", str(len(self.body))), ("Cache-Control", "no-store")]
        if document is not None:
            self.headers.append(("Content-Type", "application/json"))
        self.headers.extend(extra)

    def send(self, start_response: StartResponse, with_body: bool) -> list[bytes]:
        start_response(_status_line(self.status), self.headers)
        return [self.body] if with_body else []


def error_reply(status: int, code: str, message: str, *extra: tuple[str, str]) -> Reply:
    return Reply(status, error_document(code, message), *extra)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _query(environ: dict[str, Any]) -> dict[str, list[str]]:
    """The query parameters, each name with its values in order; 400 if not UTF-8.

    WSGI gives the raw bytes as a latin-1 string: back to bytes, then decoded as UTF-8, as are
    the percent-escapes in it (strictly: a name or scope that isn't text is refused, not
    guessed at).
    """
    raw = environ.get("QUERY_STRING", "")
    try:
        pairs = parse_qsl(raw.encode("latin-1").decode(), keep_blank_values=True, errors="strict")
    except UnicodeError:
        raise BadRequest("the query string is not valid UTF-8") from None
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    return params


def _first(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _credential_kind(credentials: Credentials) -> str:
    if isinstance(credentials, Anonymous):
        return "anonymous"
    return "basic" if isinstance(credentials, BasicCredentials) else "invalid"


class TokenEndpoint:
    """WSGI middleware: answers the token paths, hands every other request to ``fallback``."""

    def __init__(
        self, service: TokenService, audit: AuditLog, max_body: int, fallback: WSGIApp
    ) -> None:
        self.service = service
        self.audit = audit
        self.max_body = max_body
        self.fallback = fallback
        realm = _quoted(service.settings.realm)
        # A Basic challenge, never Bearer: clients would read a Bearer error= instead of the body.
        self._challenge = ("WWW-Authenticate", f'Basic realm={realm}, charset="UTF-8"')

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") not in TOKEN_PATHS:
            return self.fallback(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        started = time.perf_counter()
        try:
            reply = self._reply(method, environ)
        except HTTPException as exc:  # Werkzeug's, from reading a POST body
            reply = error_reply(exc.code or 400, _error_code(exc), exc.description or exc.name)
        except AuditUnavailable as exc:
            # Decided, but not recorded: no token leaves unaudited. Counted, as the log may be
            # exactly what is stuck.
            metrics.observe_token_request("overloaded", time.perf_counter() - started)
            log.warning("refused a token request: %s", exc)
            reply = error_reply(503, "UNAVAILABLE", f"{exc}: try again shortly", RETRY_SOON)
        except Exception:
            log.exception("unhandled error")
            reply = error_reply(500, "INTERNAL_ERROR", "internal error")
        return reply.send(start_response, with_body=method != "HEAD")

    def _reply(self, method: str, environ: dict[str, Any]) -> Reply:
        if method in ("GET", "HEAD"):
            return self.token(environ, method)
        if method == "POST":
            return self.token_oauth(environ)
        if method == "OPTIONS":
            return Reply(200, None, ("Allow", ALLOWED_METHODS))
        return error_reply(
            405, "UNSUPPORTED", f"{method} is not allowed here", ("Allow", ALLOWED_METHODS)
        )

    def token(self, environ: dict[str, Any], method: str = "GET") -> Reply:
        """``GET /v2/token``: a token for the requested scopes, or a 400/401 JSON error.

        ``offline_token=true`` (what ``docker login`` sends) also returns a refresh token.
        """
        credentials = parse_authorization(environ.get("HTTP_AUTHORIZATION"))
        user = credentials.username if isinstance(credentials, BasicCredentials) else None
        facts = TokenRequestFacts(
            method, _credential_kind(credentials), environ.get("REMOTE_ADDR"), user
        )

        def attempt() -> TokenGrant:
            params = _query(environ)
            facts.service, facts.scopes = _first(params, "service"), params.get("scope", [])
            facts.client_id = _first(params, "client_id")
            return self.service.grant_token(
                credentials,
                facts.service,
                facts.scopes,
                offline=(_first(params, "offline_token") or "").lower() == "true",
                client=facts.client,
            )

        return self._answer(attempt, with_scope=False, facts=facts)

    def token_oauth(self, environ: dict[str, Any]) -> Reply:
        """``POST /v2/token``: the OAuth2 token endpoint (Distribution's oauth.md).

        ``grant_type=password`` decides exactly as GET with Basic credentials would (containerd
        and buildkit try it first); ``grant_type=refresh_token`` is what docker, podman and
        skopeo use once they hold a refresh token. ``access_type=offline`` returns a refresh
        token: a new one for the password grant, the same one for the refresh grant. One
        ``scope`` field holds space-separated scopes.
        """
        facts = TokenRequestFacts("POST", "-", environ.get("REMOTE_ADDR"))

        def attempt() -> TokenGrant:
            form = self._form(environ)
            grant_type = form.get("grant_type")
            facts.grant_type = str(grant_type)[:32]
            facts.service, facts.scopes = form.get("service"), form.getlist("scope")
            facts.client_id = form.get("client_id")
            offline = form.get("access_type") == "offline"
            if grant_type == "password":
                credentials = credentials_from_form(form.get("username"), form.get("password"))
                facts.user = form.get("username")
                return self.service.grant_token(
                    credentials, facts.service, facts.scopes, offline=offline, client=facts.client
                )
            if grant_type == "refresh_token":
                refresh_token = form.get("refresh_token")
                if not refresh_token:
                    raise BadRequest("refresh_token is required")
                return self.service.grant_refreshed(
                    refresh_token, facts.service, facts.scopes, offline
                )
            raise BadRequest(
                f"unsupported grant_type {grant_type!r} (supported: password, refresh_token)"
            )

        return self._answer(attempt, with_scope=True, facts=facts)

    def _form(self, environ: dict[str, Any]) -> MultiDict[str, str]:
        """The form-encoded POST body; anything else is a 400, anything too long a 413.

        Decoded strictly, as the query string is: a field that isn't UTF-8, raw or
        percent-escaped, makes the request a 400 before any password is checked (Werkzeug's
        form parser would keep such an escape as text, a user name to check).
        """
        if environ.get("CONTENT_LENGTH") and environ.get("HTTP_TRANSFER_ENCODING"):
            # An nginx whose config includes the stock uwsgi_params without blanking
            # HTTP_TRANSFER_ENCODING (the original service's did) de-chunks a chunked body and
            # sends its length, but forwards "Transfer-Encoding: chunked" too; Werkzeug would
            # then ignore the length and read an empty form. The length is the body's: read by it.
            environ = {**environ}
            del environ["HTTP_TRANSFER_ENCODING"]
        request = Request(environ)
        request.max_content_length = self.max_body
        if request.mimetype != FORM_TYPE:
            raise BadRequest(f"the body must be {FORM_TYPE}")
        # Checked here as well: some Werkzeug versions quietly read an over-long body as empty.
        if request.content_length is not None and request.content_length > self.max_body:
            raise RequestEntityTooLarge()
        body = request.get_data(cache=False)
        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
        except UnicodeError:
            raise BadRequest("the body is not valid UTF-8") from None
        return MultiDict(pairs)

    def _refusal(self, exc: Exception) -> tuple[Reply, str]:
        """The error reply for a refused request, and its outcome for metrics and audit."""
        if isinstance(exc, BadRequest):
            return error_reply(400, "INVALID_REQUEST", str(exc)), "bad_request"
        if isinstance(exc, Throttled):
            retry = ("Retry-After", str(exc.retry_after))
            return error_reply(429, "TOOMANYREQUESTS", str(exc), retry), "throttled"
        if isinstance(exc, Overloaded):
            message = f"{exc}: try again shortly"
            return error_reply(503, "UNAVAILABLE", message, RETRY_SOON), "overloaded"
        return error_reply(401, "UNAUTHORIZED", str(exc), self._challenge), "bad_credentials"

    def _answer(
        self, attempt: Callable[[], TokenGrant], with_scope: bool, facts: TokenRequestFacts
    ) -> Reply:
        """Run one token decision, turn its outcome into the answer clients expect, and account
        for it in the metrics and the audit log."""
        started = time.perf_counter()
        try:
            granted = attempt()
        except (BadRequest, Unauthorized, Throttled, Overloaded) as exc:
            reply, outcome = self._refusal(exc)
            seconds = time.perf_counter() - started
            self.audit.write(facts.line(outcome, reply.status, seconds, reason=str(exc)))
            metrics.observe_token_request(outcome, seconds)
            return reply
        reply = Reply(200, _granted_document(granted, with_scope))
        seconds = time.perf_counter() - started
        facts.user = granted.subject or None
        facts.service = granted.audience
        access = [g.scope() for g in granted.grants if g.actions]
        # Recorded first: if the audit log takes no line, the token is not given (nor counted).
        self.audit.write(facts.line("issued", 200, seconds, access, granted.issued.token_id))
        metrics.observe_token_request("issued", seconds)
        metrics.count_actions(
            [action for r in granted.requests for action in r.actions],
            [action for g in granted.grants for action in g.actions],
        )
        return reply


def _granted_document(granted: TokenGrant, with_scope: bool) -> dict[str, Any]:
    issued = granted.issued
    body: dict[str, Any] = {
        "token": issued.token,
        "access_token": issued.token,  # containerd's POST reads only this one
        "expires_in": issued.expires_in,
        "issued_at": issued.issued_at_rfc3339,
    }
    if with_scope:
        body["scope"] = granted.scope  # OAuth2: REQUIRED, what was granted
    if granted.refresh_token:
        body["refresh_token"] = granted.refresh_token
    return body


def _error_code(exc: HTTPException) -> str:
    return {404: "NOT_FOUND", 405: "UNSUPPORTED", 413: "SIZE_INVALID"}.get(exc.code or 0, "ERROR")


def _http_error(exc: HTTPException) -> Response:
    """404, 405 and the like as JSON, keeping headers such as ``Allow``."""
    response = json_response(
        error_document(_error_code(exc), exc.description or exc.name), exc.code or 500
    )
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _internal_error(exc: Exception) -> Any:
    log.exception("unhandled error")
    return json_response(error_document("INTERNAL_ERROR", "internal error"), 500)


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
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _internal_error)
