"""HTTP in and out for the token endpoint; every decision is in :mod:`auth_service.service`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .credentials import credentials_from_form, parse_authorization
from .service import BadRequest, TokenGrant, TokenService, Unauthorized

EXTENSION = "auth_service"
# /auth/token is where a registry with `autoredirect: true` points clients.
TOKEN_PATHS = ("/v2/token", "/auth/token")

bp = Blueprint("token", __name__)


def error_response(status: int, code: str, message: str) -> Response:
    """A JSON body in the registry's own error format, which every client knows how to show."""
    response = jsonify({"errors": [{"code": code, "message": message, "detail": None}]})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


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


def _answer(attempt: Callable[[], TokenGrant], with_scope: bool) -> Response:
    """Run one token decision and turn its outcome into the response clients expect."""
    service = _service()
    try:
        granted = attempt()
    except BadRequest as exc:
        return error_response(400, "INVALID_REQUEST", str(exc))
    except Unauthorized as exc:
        response = error_response(401, "UNAUTHORIZED", str(exc))
        # A Basic challenge, never Bearer: clients would read a Bearer error= instead of the body.
        realm = _quoted(service.settings.realm)
        response.headers["WWW-Authenticate"] = f'Basic realm={realm}, charset="UTF-8"'
        return response
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
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


def token() -> Response:
    """``GET /v2/token``: a token for the requested scopes, or a 400/401 JSON error.

    ``offline_token=true`` (what ``docker login`` sends) also returns a refresh token.
    """
    credentials = parse_authorization(request.environ.get("HTTP_AUTHORIZATION"))

    def attempt() -> TokenGrant:
        args = _query_args()
        return _service().grant_token(
            credentials,
            args.get("service"),
            args.getlist("scope"),
            offline=args.get("offline_token", "").lower() == "true",
        )

    return _answer(attempt, with_scope=False)


def token_oauth() -> Response:
    """``POST /v2/token``: the OAuth2 token endpoint (Distribution's oauth.md).

    ``grant_type=password`` decides exactly as GET with Basic credentials would (containerd and
    buildkit try it first); ``grant_type=refresh_token`` is what docker, podman and skopeo use once
    they hold a refresh token. ``access_type=offline`` returns a refresh token: a new one for the
    password grant, the same one for the refresh grant. One ``scope`` field holds
    space-separated scopes.
    """

    def attempt() -> TokenGrant:
        form = _form()
        grant_type = form.get("grant_type")
        service, scopes = form.get("service"), form.getlist("scope")
        offline = form.get("access_type") == "offline"
        if grant_type == "password":
            credentials = credentials_from_form(form.get("username"), form.get("password"))
            return _service().grant_token(credentials, service, scopes, offline=offline)
        if grant_type == "refresh_token":
            refresh_token = form.get("refresh_token")
            if not refresh_token:
                raise BadRequest("refresh_token is required")
            return _service().grant_refreshed(refresh_token, service, scopes, offline)
        raise BadRequest(
            f"unsupported grant_type {grant_type!r} (supported: password, refresh_token)"
        )

    return _answer(attempt, with_scope=True)


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
