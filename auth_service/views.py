"""HTTP in and out for the token endpoint; every decision is in :mod:`auth_service.service`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from . import metrics
from .audit import AuditLog, TokenRequestFacts
from .credentials import (
    Anonymous,
    BasicCredentials,
    Credentials,
    credentials_from_form,
    parse_authorization,
)
from .service import BadRequest, Overloaded, Throttled, TokenGrant, TokenService, Unauthorized

EXTENSION = "auth_service"
AUDIT_EXTENSION = "auth_service.audit"
# /auth/token is where a registry with `autoredirect: true` points clients.
TOKEN_PATHS = ("/v2/token", "/auth/token")

bp = Blueprint("token", __name__)


def error_response(status: int, code: str, message: str) -> Response:
    """A JSON body in the registry's own error format, which every client knows how to show."""
    return json_response({"errors": [{"code": code, "message": message, "detail": None}]}, status)


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    """A compact JSON response that no cache keeps (made directly: jsonify costs more)."""
    return Response(
        json.dumps(body, separators=(",", ":")),
        status,
        {"Cache-Control": "no-store"},
        mimetype="application/json",
    )


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _service() -> TokenService:
    return current_app.extensions[EXTENSION]


def _query_args() -> MultiDict[str, str]:
    """The query parameters; raw bytes that aren't UTF-8 make Werkzeug raise, so say 400."""
    try:
        return request.args
    except UnicodeDecodeError:
        raise BadRequest("the query string is not valid UTF-8") from None


def _form() -> MultiDict[str, str]:
    """The form-encoded POST body; anything else is a 400."""
    if request.mimetype != "application/x-www-form-urlencoded":
        raise BadRequest("the body must be application/x-www-form-urlencoded")
    # Checked here as well: some Werkzeug versions quietly read an over-long form as empty.
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()
    try:
        return request.form
    except UnicodeDecodeError:
        raise BadRequest("the body is not valid UTF-8") from None


def _facts(method: str, grant_type: str, credentials: Credentials | None) -> TokenRequestFacts:
    """The audit facts known before the request is decided: who is asking, from where."""
    user = credentials.username if isinstance(credentials, BasicCredentials) else None
    return TokenRequestFacts(method, grant_type, request.remote_addr, user)


def _credential_kind(credentials: Credentials) -> str:
    if isinstance(credentials, Anonymous):
        return "anonymous"
    return "basic" if isinstance(credentials, BasicCredentials) else "invalid"


def _refusal(exc: Exception) -> tuple[Response, str]:
    """The error response for a refused request, and its outcome name for metrics and audit."""
    if isinstance(exc, BadRequest):
        return error_response(400, "INVALID_REQUEST", str(exc)), "bad_request"
    if isinstance(exc, Throttled):
        response = error_response(429, "TOOMANYREQUESTS", str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response, "throttled"
    if isinstance(exc, Overloaded):
        response = error_response(503, "UNAVAILABLE", f"{exc}: try again shortly")
        response.headers["Retry-After"] = "1"
        return response, "overloaded"
    response = error_response(401, "UNAUTHORIZED", str(exc))
    # A Basic challenge, never Bearer: clients would read a Bearer error= instead of the body.
    realm = _quoted(_service().settings.realm)
    response.headers["WWW-Authenticate"] = f'Basic realm={realm}, charset="UTF-8"'
    return response, "bad_credentials"


def _answer(
    attempt: Callable[[], TokenGrant], with_scope: bool, facts: TokenRequestFacts
) -> Response:
    """Run one token decision, turn its outcome into the response clients expect, and account
    for it in the metrics and the audit log."""
    started = time.perf_counter()
    audit: AuditLog = current_app.extensions[AUDIT_EXTENSION]
    try:
        granted = attempt()
    except (BadRequest, Unauthorized, Throttled, Overloaded) as exc:
        response, outcome = _refusal(exc)
        seconds = time.perf_counter() - started
        metrics.observe_token_request(outcome, seconds)
        audit.write(facts.line(outcome, response.status_code, seconds, reason=str(exc)))
        return response
    response = _granted_response(granted, with_scope)
    seconds = time.perf_counter() - started
    access = [f"{g.type}:{g.name}:{','.join(g.actions)}" for g in granted.grants if g.actions]
    metrics.observe_token_request("issued", seconds)
    metrics.count_actions(
        (action for r in granted.requests for action in r.actions),
        (action for g in granted.grants for action in g.actions),
    )
    facts.user = granted.subject or None
    facts.service = granted.audience
    audit.write(facts.line("issued", 200, seconds, access, granted.issued.token_id))
    return response


def _granted_response(granted: TokenGrant, with_scope: bool) -> Response:
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
    return json_response(body)


def token() -> Response:
    """``GET /v2/token``: a token for the requested scopes, or a 400/401 JSON error.

    ``offline_token=true`` (what ``docker login`` sends) also returns a refresh token.
    """
    credentials = parse_authorization(request.environ.get("HTTP_AUTHORIZATION"))
    facts = _facts("GET", _credential_kind(credentials), credentials)

    def attempt() -> TokenGrant:
        args = _query_args()
        facts.service, facts.scopes = args.get("service"), args.getlist("scope")
        facts.client_id = args.get("client_id")
        return _service().grant_token(
            credentials,
            facts.service,
            facts.scopes,
            offline=args.get("offline_token", "").lower() == "true",
            client=facts.client,
        )

    return _answer(attempt, with_scope=False, facts=facts)


def token_oauth() -> Response:
    """``POST /v2/token``: the OAuth2 token endpoint (Distribution's oauth.md).

    ``grant_type=password`` decides exactly as GET with Basic credentials would (containerd and
    buildkit try it first); ``grant_type=refresh_token`` is what docker, podman and skopeo use once
    they hold a refresh token. ``access_type=offline`` returns a refresh token: a new one for the
    password grant, the same one for the refresh grant. One ``scope`` field holds
    space-separated scopes.
    """
    facts = _facts("POST", "-", None)

    def attempt() -> TokenGrant:
        form = _form()
        grant_type = form.get("grant_type")
        facts.grant_type = str(grant_type)[:32]
        facts.service, facts.scopes = form.get("service"), form.getlist("scope")
        facts.client_id = form.get("client_id")
        offline = form.get("access_type") == "offline"
        if grant_type == "password":
            credentials = credentials_from_form(form.get("username"), form.get("password"))
            facts.user = form.get("username")
            return _service().grant_token(
                credentials, facts.service, facts.scopes, offline=offline, client=facts.client
            )
        if grant_type == "refresh_token":
            refresh_token = form.get("refresh_token")
            if not refresh_token:
                raise BadRequest("refresh_token is required")
            return _service().grant_refreshed(refresh_token, facts.service, facts.scopes, offline)
        raise BadRequest(
            f"unsupported grant_type {grant_type!r} (supported: password, refresh_token)"
        )

    return _answer(attempt, with_scope=True, facts=facts)


for _path in TOKEN_PATHS:
    _name = _path.replace("/", "_")
    bp.add_url_rule(_path, endpoint=f"token{_name}", view_func=token, methods=["GET"])
    bp.add_url_rule(_path, endpoint=f"oauth{_name}", view_func=token_oauth, methods=["POST"])


def _http_error(exc: HTTPException) -> Response:
    """404, 405 and the like as JSON, keeping headers such as ``Allow``."""
    codes = {404: "NOT_FOUND", 405: "UNSUPPORTED"}
    response = error_response(
        exc.code or 500, codes.get(exc.code or 0, "ERROR"), exc.description or exc.name
    )
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _internal_error(exc: Exception) -> Any:
    current_app.logger.exception("unhandled error")
    return error_response(500, "INTERNAL_ERROR", "internal error")


# Token requests are small; anything larger is refused (413) before it is read.
MAX_BODY_BYTES = 64 * 1024


def init_app(app: Flask) -> None:
    """Register the endpoint and JSON error pages."""
    # Flask's defaults are None (no limit) and 500 kB; ours are stricter.
    for name in ("MAX_CONTENT_LENGTH", "MAX_FORM_MEMORY_SIZE"):
        if app.config.get(name) in (None, app.default_config.get(name)):
            app.config[name] = MAX_BODY_BYTES
    app.register_blueprint(bp)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _internal_error)
