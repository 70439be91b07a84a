"""What the service answers: a token, or a refusal in the registry's error format.

Every answer is compact JSON that no cache keeps. The token endpoint writes :class:`Reply`
straight to WSGI; the pages Flask serves (``/health``, its 404s and 405s) use
:func:`json_response`. Refusals are answered as their row of :data:`auth_service.errors.REFUSALS`
says.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from auth_service.errors import (
    ERROR_CODE_BY_STATUS,
    INTERNAL_ERROR,
    UNKNOWN_ERROR_CODE,
    Refused,
    RetryAfter,
)
from auth_service.records.json_text import wire_json

if TYPE_CHECKING:
    from auth_service.service import TokenGrant

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


def error_document(code: str, message: str) -> dict[str, Any]:
    """The registry's own error format, which every client knows how to show."""
    return {"errors": [{"code": code, "message": message, "detail": None}]}


def token_document(grant: TokenGrant, with_scope: bool) -> dict[str, Any]:
    """The body of a 200: the token, and a refresh token if one was issued.

    ``with_scope``: OAuth2's POST answer names what was granted (its ``scope`` is REQUIRED).
    """
    issued = grant.issued
    body: dict[str, Any] = {
        "token": issued.token,
        "access_token": issued.token,  # containerd's POST reads only this one
        "expires_in": issued.expires_in,
        "issued_at": issued.issued_at_rfc3339,
    }
    if with_scope:
        body["scope"] = grant.scope
    if grant.refresh_token:
        body["refresh_token"] = grant.refresh_token
    return body


@functools.cache
def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"


class Reply:
    """A finished answer of the token endpoint: status, headers, and the body's bytes."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, document: dict[str, Any] | None, *extra: tuple[str, str]):
        self.status = status
        self.body = b"" if document is None else wire_json(document).encode()
        self.headers = [("Content-Length", str(len(self.body))), ("Cache-Control", "no-store")]
        if document is not None:
            self.headers.append(("Content-Type", "application/json"))
        self.headers.extend(extra)

    def send(self, start_response: StartResponse, with_body: bool) -> list[bytes]:
        """Start the WSGI response; the body unless the request was a HEAD."""
        start_response(_status_line(self.status), self.headers)
        return [self.body] if with_body else []


def basic_challenge(realm: str) -> tuple[str, str]:
    """The ``WWW-Authenticate`` header of a refusal that asks for a password: Basic, never
    Bearer, as clients would read a Bearer ``error=`` instead of the JSON body."""
    quoted = '"' + realm.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return ("WWW-Authenticate", f'Basic realm={quoted}, charset="UTF-8"')


def refusal_reply(refused: Refused, challenge: tuple[str, str]) -> Reply:
    """The answer to a refused token request, as its row says; ``challenge`` is the endpoint's
    ``WWW-Authenticate`` header, sent if the row asks for it."""
    row = refused.refusal
    headers: list[tuple[str, str]] = []
    if row.retry_after is RetryAfter.ONE_SECOND:
        headers.append(("Retry-After", "1"))
    elif row.retry_after is RetryAfter.THE_EXCEPTIONS:
        headers.append(("Retry-After", str(refused.retry_after)))
    if row.challenge:
        headers.append(challenge)
    headers.extend(refused.headers)
    return Reply(row.status, error_document(row.code, refused.client_message()), *headers)


def internal_error_reply() -> Reply:
    """The answer to a request a bug stopped: it says nothing of the bug."""
    return Reply(INTERNAL_ERROR.status, error_document(INTERNAL_ERROR.code, INTERNAL_ERROR.message))


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    """A response of compact JSON that no cache keeps, for the pages Flask serves."""
    return Response(
        wire_json(body), status, {"Cache-Control": "no-store"}, mimetype="application/json"
    )


def http_error_response(exc: HTTPException) -> Response:
    """Flask's and Werkzeug's HTTP errors (a 404 for an unknown path, a 405 on ``/metrics``) in
    the registry's format, with the code the refusals' table gives the status; their headers,
    such as ``Allow``, kept."""
    status = exc.code or 500
    code = ERROR_CODE_BY_STATUS.get(status, UNKNOWN_ERROR_CODE)
    response = json_response(error_document(code, exc.description or exc.name), status)
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def internal_error_response(exc: Exception) -> Response:
    """A bug in a page Flask serves: logged with its traceback, answered without it."""
    log.exception("unhandled error")
    document = error_document(INTERNAL_ERROR.code, INTERNAL_ERROR.message)
    return json_response(document, INTERNAL_ERROR.status)
