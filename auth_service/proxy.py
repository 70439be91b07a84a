"""Proxy mode: one registry request, decided; with no HTTP in it.

nginx asks about every request a client sends to the registry (``auth_request``, see
nginx/auth-proxy.conf) and hands the registry the token this returns as ``Authorization:
Bearer``. The registry keeps token auth and trusts only our certificate; clients that speak only
Basic auth (``curl -u``, scripts, mirrors) use it directly, one round trip per request.

method + URI → required access (:mod:`auth_service.access.registry_routes`) → credentials →
authenticate (the token endpoint's login path: throttle, credential cache, fair bcrypt turns) →
authorize (the same policy: requested ∩ allowed, the catalog only by grant, the anonymous rule
for a request without credentials) → a token for exactly what the request needs, reused from
:class:`auth_service.tokens.token_cache.TokenCache` while most of its life remains.

A request that already carries ``Authorization: Bearer`` (a client that went to ``/v2/token``
first) is not decided here: it goes to the registry untouched, which checks its token. Refusals:
no or bad credentials are :class:`auth_service.errors.AuthenticationRequired` or
:class:`auth_service.errors.Unauthorized` (401 with a Basic challenge, as registries answer
``GET /v2/`` without credentials, so that ``docker login`` really checks the password); a known
user without the access is :class:`auth_service.errors.Denied` (403); the login path's Throttled
and Overloaded as for a token request.
"""

from __future__ import annotations

from dataclasses import dataclass

from auth_service.access.policy import Grant, grant_access
from auth_service.access.registry_routes import BASE, RequiredAccess, required_access
from auth_service.errors import AuthenticationRequired, Denied, Unauthorized
from auth_service.http.credentials import (
    Anonymous,
    BasicCredentials,
    Credentials,
    InvalidCredentials,
    parse_authorization,
)
from auth_service.service import TokenService
from auth_service.tokens.signer import IssuedToken
from auth_service.tokens.token_cache import TokenCache

__all__ = ["ProxyDecider", "ProxyGrant", "ProxyRequest", "is_bearer"]


def is_bearer(authorization: str | None) -> bool:
    """Whether the header carries a token (scheme compared case-insensitively, as the registry
    does): such a request goes to the registry as it is."""
    return authorization is not None and authorization[:7].lower() == "bearer "


@dataclass(frozen=True)
class ProxyRequest:
    """One registry request as nginx describes it; what the audit line says about it."""

    method: str
    uri: str
    client: str | None
    credentials: Credentials
    required: RequiredAccess
    client_id: None = None

    @property
    def grant_type(self) -> str:
        """The audit line's kind of request: its credentials, as for a token request."""
        if isinstance(self.credentials, Anonymous):
            return "anonymous"
        return "basic" if isinstance(self.credentials, BasicCredentials) else "invalid"

    @property
    def user(self) -> str | None:
        """The user name the client claims."""
        if isinstance(self.credentials, BasicCredentials):
            return self.credentials.username
        return None

    @property
    def scopes(self) -> tuple[str, ...]:
        """What the request needs, in scope syntax."""
        return self.required.scopes()


@dataclass(frozen=True)
class ProxyGrant:
    """The token for one registry request and what went into it."""

    issued: IssuedToken
    subject: str
    audience: str
    grants: list[Grant]
    reused: bool


def read_proxy_request(
    method: str, uri: str, authorization: str | None, client: str | None
) -> ProxyRequest:
    """The request nginx asks about: its method, URI (path and query) and Authorization."""
    return ProxyRequest(
        method, uri, client, parse_authorization(authorization), required_access(method, uri)
    )


def _missing(grants: list[Grant], required: RequiredAccess) -> list[str]:
    """The required access not granted, in scope syntax."""
    missing = []
    for request, grant in zip(required.requests, grants, strict=True):
        lacking = request.actions - set(grant.actions)
        if lacking:
            missing.append(f"{request.type}:{request.name}:{','.join(sorted(lacking))}")
    return missing


class ProxyDecider:
    """Decides registry requests with the token service's login path, policy and signer."""

    def __init__(self, service: TokenService, cache: TokenCache) -> None:
        self.service = service
        self.cache = cache

    def decide(self, request: ProxyRequest) -> ProxyGrant:
        """The token for ``request``; raises a :class:`auth_service.errors.Refused`."""
        credentials = request.credentials
        if isinstance(credentials, InvalidCredentials):
            raise Unauthorized(credentials.reason)  # before any other work, as /v2/token
        service = self.service
        # The one service configured: the registry nginx sends these requests to.
        audience = service.audience_for(None)
        access_files = service.live.current()
        if isinstance(credentials, Anonymous):
            if request.required.route == BASE or not service.settings.anonymous_access:
                raise AuthenticationRequired("authentication required")
            user = None
        else:
            user = service.authenticate(credentials, access_files.users, request.client)
        grants = grant_access(user, request.required.requests, access_files.anonymous)
        missing = _missing(grants, request.required)
        if missing:
            if user is None:
                raise AuthenticationRequired(f"anonymous access not allowed: {' '.join(missing)}")
            raise Denied(f"not granted: {' '.join(missing)}")
        subject = user.name if user is not None else ""
        pass_hash = user.pass_hash if user is not None else b""
        key = (subject, audience, tuple(grant.scope() for grant in grants))
        issued = self.cache.get(key, pass_hash)
        if issued is not None:
            return ProxyGrant(issued, subject, audience, grants, reused=True)
        issued = service.signer.issue(subject, audience, [grant.claim() for grant in grants])
        self.cache.put(key, pass_hash, issued)
        return ProxyGrant(issued, subject, audience, grants, reused=False)
