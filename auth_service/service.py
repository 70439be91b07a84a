"""One token request, start to finish, with no HTTP in it.

credentials → service (audience) → scopes → authenticate → authorize → sign. The view turns the
two exceptions below into 400 and 401 responses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from .credentials import Anonymous, BasicCredentials, Credentials, InvalidCredentials
from .live_config import LiveConfig
from .policy import Grant, grant_access
from .scopes import ScopeError, parse_scopes
from .settings import Settings
from .tokens import IssuedToken, TokenSigner
from .users import User, UserDirectory

log = logging.getLogger(__name__)

BAD_CREDENTIALS = "incorrect username or password"


class BadRequest(Exception):
    """The request is malformed (a broken scope, an unknown service): answered with 400."""


class Unauthorized(Exception):
    """Authentication failed or is required: answered with 401, never with a token."""


@dataclass(frozen=True)
class TokenGrant:
    """A token and what went into it."""

    issued: IssuedToken
    subject: str
    audience: str
    grants: list[Grant]

    @property
    def scope(self) -> str:
        """What was granted, in scope syntax, space-separated (the OAuth2 ``scope`` field)."""
        return " ".join(
            f"{g.type}:{g.name}:{','.join(g.actions)}" for g in self.grants if g.actions
        )


class TokenService:
    """Composes the settings, the live access files and the signer into token decisions."""

    def __init__(self, settings: Settings, signer: TokenSigner, live: LiveConfig) -> None:
        self.settings = settings
        self.signer = signer
        self.live = live

    def audience_for(self, requested: str | None) -> str:
        """The registry the token is for: the requested ``service`` if allowed.

        With exactly one configured service, a request that names none gets that one.
        """
        configured = self.settings.services
        if not requested:
            if len(configured) == 1:
                return configured[0]
            raise BadRequest("the service parameter is required")
        if configured and requested not in configured:
            raise BadRequest(f"unknown service {requested!r}")
        return requested

    def authenticate(self, credentials: Credentials, users: UserDirectory) -> User | None:
        """The user the credentials prove, None for an anonymous client, else Unauthorized."""
        if isinstance(credentials, InvalidCredentials):
            raise Unauthorized(credentials.reason)
        if isinstance(credentials, Anonymous):
            if not self.settings.anonymous_access:
                raise Unauthorized("authentication required")
            return None
        assert isinstance(credentials, BasicCredentials)
        user = users.verify_password(credentials.username, credentials.password.reveal())
        if user is None:
            log.info("authentication failed for user %r", credentials.username)
            raise Unauthorized(BAD_CREDENTIALS)
        return user

    def grant_token(
        self, credentials: Credentials, service: str | None, scope_values: Iterable[str]
    ) -> TokenGrant:
        """Decide and sign one token; raises BadRequest or Unauthorized."""
        if isinstance(credentials, InvalidCredentials):
            raise Unauthorized(credentials.reason)  # before any other work: no oracle, no cost
        audience = self.audience_for(service)
        try:
            requests = parse_scopes(scope_values)
        except ScopeError as exc:
            raise BadRequest(str(exc)) from None
        access_files = self.live.current()
        user = self.authenticate(credentials, access_files.users)
        grants = grant_access(user, requests, access_files.anonymous)
        subject = user.name if user is not None else ""
        issued = self.signer.issue(subject, audience, [grant.claim() for grant in grants])
        log.info(
            "token issued: sub=%r service=%r access=%s",
            subject,
            audience,
            " ".join(f"{g.type}:{g.name}:{','.join(g.actions) or '-'}" for g in grants) or "-",
        )
        return TokenGrant(issued, subject, audience, grants)
