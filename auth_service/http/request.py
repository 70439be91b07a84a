"""A token request, read from WSGI into one immutable value before anything is decided.

``GET`` (and ``HEAD``) carries Basic credentials and the query string (``service``, ``scope``,
``offline_token``, ``client_id``); ``POST`` is OAuth2's form (``grant_type`` password or
refresh_token). Both are read into a :class:`TokenRequest`, which holds what the decision takes
and what the audit line says. A request that can't be read in full is still one: it carries the
refusal it earned (:attr:`TokenRequest.malformed`), and what was read before is recorded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Request

from auth_service.errors import BadRequest, BodyTooLarge, Refused
from auth_service.http.credentials import (
    Anonymous,
    BasicCredentials,
    Credentials,
    credentials_from_form,
    parse_authorization,
)

FORM_TYPE = "application/x-www-form-urlencoded"
SUPPORTED_GRANT_TYPES = ("password", "refresh_token")


@dataclass(frozen=True)
class TokenRequest:
    """One token request as the client sent it."""

    method: str
    # The audit line's kind of request: for GET, its credentials (anonymous, basic or invalid);
    # for POST, the form's grant_type as sent ("-" if the form could not be read).
    grant_type: str
    # The client's address, as nginx passes it: failed logins are throttled by it.
    client: str | None
    # The user name the client claims (GET's Basic user, the password grant's username).
    user: str | None = None
    service: str | None = None
    # Each ``scope`` value as sent; one value may hold several scopes, space-separated.
    scopes: tuple[str, ...] = ()
    client_id: str | None = None
    # Whether it asks for a refresh token too (GET offline_token=true, POST access_type=offline).
    offline: bool = False
    # A login (GET, or POST's password grant); None for the refresh_token grant.
    credentials: Credentials | None = None
    # POST's refresh_token grant: the refresh token to exchange.
    refresh_token: str | None = dataclasses.field(default=None, repr=False)
    # Why this request cannot be decided, found while reading it: refused before any other work.
    malformed: Refused | None = None


def read_token_request(environ: dict[str, Any], max_body: int) -> TokenRequest:
    """The token request in ``environ`` (a GET, HEAD or POST); a POST body longer than
    ``max_body`` bytes is not read."""
    method = environ.get("REQUEST_METHOD", "GET")
    client = environ.get("REMOTE_ADDR")
    if method == "POST":
        return _read_form(environ, client, max_body)
    return _read_query(environ, method, client)


def _read_query(environ: dict[str, Any], method: str, client: str | None) -> TokenRequest:
    credentials = parse_authorization(environ.get("HTTP_AUTHORIZATION"))
    kind = _credential_kind(credentials)
    user = credentials.username if isinstance(credentials, BasicCredentials) else None
    try:
        params = _query(environ)
    except BadRequest as exc:
        return TokenRequest(method, kind, client, user, credentials=credentials, malformed=exc)
    return TokenRequest(
        method,
        kind,
        client,
        user,
        service=_first(params, "service"),
        scopes=tuple(params.get("scope", ())),
        client_id=_first(params, "client_id"),
        offline=(_first(params, "offline_token") or "").lower() == "true",
        credentials=credentials,
    )


def _read_form(environ: dict[str, Any], client: str | None, max_body: int) -> TokenRequest:
    try:
        form = _form(environ, max_body)
    except (BadRequest, BodyTooLarge) as exc:
        return TokenRequest("POST", "-", client, malformed=exc)
    grant_type = form.get("grant_type")
    user: str | None = None
    credentials: Credentials | None = None
    refresh_token: str | None = None
    malformed: Refused | None = None
    if grant_type == "password":
        user = form.get("username")
        credentials = credentials_from_form(user, form.get("password"))
    elif grant_type == "refresh_token":
        refresh_token = form.get("refresh_token") or None
        if refresh_token is None:
            malformed = BadRequest("refresh_token is required")
    else:
        supported = ", ".join(SUPPORTED_GRANT_TYPES)
        malformed = BadRequest(f"unsupported grant_type {grant_type!r} (supported: {supported})")
    return TokenRequest(
        "POST",
        str(grant_type)[:32],
        client,
        user,
        service=form.get("service"),
        scopes=tuple(form.getlist("scope")),
        client_id=form.get("client_id"),
        offline=form.get("access_type") == "offline",
        credentials=credentials,
        refresh_token=refresh_token,
        malformed=malformed,
    )


def _credential_kind(credentials: Credentials) -> str:
    if isinstance(credentials, Anonymous):
        return "anonymous"
    return "basic" if isinstance(credentials, BasicCredentials) else "invalid"


def _query(environ: dict[str, Any]) -> dict[str, list[str]]:
    """The query parameters, each name with its values in order; BadRequest if not UTF-8.

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


def _form(environ: dict[str, Any], max_body: int) -> MultiDict[str, str]:
    """The form-encoded POST body; BadRequest for anything else, BodyTooLarge if too long.

    Decoded strictly, as the query string is: a field that isn't UTF-8, raw or percent-escaped,
    makes the request a 400 before any password is checked (Werkzeug's form parser would keep
    such an escape as text, a user name to check).
    """
    if environ.get("CONTENT_LENGTH") and environ.get("HTTP_TRANSFER_ENCODING"):
        # An nginx whose config includes the stock uwsgi_params without blanking
        # HTTP_TRANSFER_ENCODING (the original service's did) de-chunks a chunked body and
        # sends its length, but forwards "Transfer-Encoding: chunked" too; Werkzeug would
        # then ignore the length and read an empty form. The length is the body's: read by it.
        environ = {**environ}
        del environ["HTTP_TRANSFER_ENCODING"]
    request = Request(environ)
    request.max_content_length = max_body
    if request.mimetype != FORM_TYPE:
        raise BadRequest(f"the body must be {FORM_TYPE}")
    # Checked here as well: some Werkzeug versions quietly read an over-long body as empty.
    if request.content_length is not None and request.content_length > max_body:
        raise BodyTooLarge()
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:  # a body without a length that ran past max_body
        raise BodyTooLarge() from None
    except HTTPException:  # the client went away before sending all it announced
        raise BadRequest("the body could not be read") from None
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
    except UnicodeError:
        raise BadRequest("the body is not valid UTF-8") from None
    return MultiDict(pairs)
