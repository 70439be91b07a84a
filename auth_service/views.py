"""HTTP in and out for the token endpoint; every decision is in :mod:`auth_service.service`."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from .credentials import parse_authorization
from .service import BadRequest, TokenService, Unauthorized

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


def token() -> Response:
    """``GET /v2/token``: a token for the requested scopes, or a 400/401 JSON error."""
    service = _service()
    credentials = parse_authorization(request.environ.get("HTTP_AUTHORIZATION"))
    try:
        args = _query_args()
        granted = service.grant_token(credentials, args.get("service"), args.getlist("scope"))
    except BadRequest as exc:
        return error_response(400, "INVALID_REQUEST", str(exc))
    except Unauthorized as exc:
        response = error_response(401, "UNAUTHORIZED", str(exc))
        # A Basic challenge, never Bearer: clients would read a Bearer error= instead of the body.
        realm = _quoted(service.settings.realm)
        response.headers["WWW-Authenticate"] = f'Basic realm={realm}, charset="UTF-8"'
        return response
    issued = granted.issued
    response = jsonify(
        {
            "token": issued.token,
            "access_token": issued.token,
            "expires_in": issued.expires_in,
            "issued_at": issued.issued_at_rfc3339,
        }
    )
    response.headers["Cache-Control"] = "no-store"
    return response


for _path in TOKEN_PATHS:
    bp.add_url_rule(
        _path, endpoint=f"token{_path.replace('/', '_')}", view_func=token, methods=["GET"]
    )


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


def init_app(app: Flask) -> None:
    """Register the endpoint and JSON error pages."""
    app.register_blueprint(bp)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _internal_error)
