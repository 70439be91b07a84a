"""One token request, start to finish, with no HTTP in it.

credentials → service (audience) → scopes → authenticate → authorize → sign. A request that is
refused raises a :class:`auth_service.errors.Refused`: BadRequest and Unauthorized from here,
Throttled and Overloaded from the login path; the token endpoint answers each as the table of
refusals in :mod:`auth_service.errors` says.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from auth_service.access.policy import Grant, grant_access
from auth_service.access.scopes import ResourceRequest, ScopeError, parse_scopes
from auth_service.errors import BadRequest, Unauthorized
from auth_service.files.live_config import LiveConfig
from auth_service.files.revocations import Revocations
from auth_service.files.settings import Settings
from auth_service.files.users import User, UserDirectory
from auth_service.files.watched import WatchedFiles
from auth_service.http.credentials import (
    Anonymous,
    BasicCredentials,
    Credentials,
    InvalidCredentials,
)
from auth_service.passwords.login import PasswordChecker
from auth_service.tokens.refresh import InvalidRefreshToken, RefreshTokenCodec
from auth_service.tokens.signer import IssuedToken, TokenSigner

if TYPE_CHECKING:
    from auth_service.shared.state import SharedState

log = logging.getLogger(__name__)

BAD_CREDENTIALS = "incorrect username or password"


__all__ = ["TokenGrant", "TokenService"]


@dataclass(frozen=True)
class TokenGrant:
    """A token and what went into it."""

    issued: IssuedToken
    subject: str
    audience: str
    grants: list[Grant]
    requests: list[ResourceRequest]
    refresh_token: str | None = None

    @property
    def scope(self) -> str:
        """What was granted, in scope syntax, space-separated (the OAuth2 ``scope`` field)."""
        return " ".join(g.scope() for g in self.grants if g.actions)


class TokenService:
    """Composes the settings, the live access files and the signer into token decisions."""

    def __init__(
        self,
        settings: Settings,
        signer: TokenSigner,
        live: LiveConfig,
        refresh: RefreshTokenCodec | None,
        revocations: WatchedFiles[Revocations],
        passwords: PasswordChecker,
        shared: SharedState | None = None,
    ) -> None:
        self.settings = settings
        self.signer = signer
        self.live = live
        self.refresh = refresh  # None: refresh tokens are disabled
        self.revocations = revocations
        self.passwords = passwords
        self.shared = shared  # None: no REDIS_URL, nothing shared with other instances

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

    def _gets_refresh_token(self, user: User | None, offline: bool) -> bool:
        """Whether a login of ``user`` that asks ``offline`` gets a refresh token: one is bound to
        the hash checked, so such a login must not rehash it."""
        return offline and self.refresh is not None and user is not None and user.refresh_tokens

    def authenticate(
        self,
        credentials: Credentials,
        users: UserDirectory,
        client: str | None = None,
        offline: bool = False,
    ) -> User | None:
        """The user the credentials prove, None for an anonymous client, else Unauthorized.

        ``client`` is the client's address, which failed logins are throttled by; ``offline``,
        whether the login asks for a refresh token too.
        """
        if isinstance(credentials, InvalidCredentials):
            raise Unauthorized(credentials.reason)
        if isinstance(credentials, Anonymous):
            if not self.settings.anonymous_access:
                raise Unauthorized("authentication required")
            return None
        assert isinstance(credentials, BasicCredentials)
        user = self.passwords.verify(
            users,
            credentials.username,
            credentials.password.reveal(),
            client,
            may_rehash=not self._gets_refresh_token(users.get(credentials.username), offline),
        )
        if user is None:
            raise Unauthorized(BAD_CREDENTIALS)
        return user

    def _requests(self, service: str | None, scope_values: Iterable[str]):
        audience = self.audience_for(service)
        try:
            return audience, parse_scopes(scope_values)
        except ScopeError as exc:
            raise BadRequest(str(exc)) from None

    def _sign(
        self, user: User | None, audience: str, requests, anonymous, refresh_token: str | None
    ) -> TokenGrant:
        grants = grant_access(user, requests, anonymous)
        subject = user.name if user is not None else ""
        issued = self.signer.issue(subject, audience, [grant.claim() for grant in grants])
        return TokenGrant(issued, subject, audience, grants, requests, refresh_token)

    def grant_token(
        self,
        credentials: Credentials,
        service: str | None,
        scope_values: Iterable[str],
        offline: bool = False,
        client: str | None = None,
    ) -> TokenGrant:
        """Decide and sign one token; raises BadRequest, Unauthorized, Throttled or Overloaded.

        ``offline``: also issue a refresh token, if the client authenticated and refresh tokens
        are enabled. ``client``: the client's address.
        """
        if isinstance(credentials, InvalidCredentials):
            raise Unauthorized(credentials.reason)  # before any other work: no oracle, no cost
        audience, requests = self._requests(service, scope_values)
        access_files = self.live.current()
        user = self.authenticate(credentials, access_files.users, client, offline)
        refresh_token = None
        if self._gets_refresh_token(user, offline):
            refresh_token, claims = self.refresh.issue(user, audience)
            log.info(
                "refresh token issued: sub=%r service=%r id=%s expires=%d",
                user.name,
                audience,
                claims.token_id,
                claims.expires_at,
            )
        return self._sign(user, audience, requests, access_files.anonymous, refresh_token)

    def grant_refreshed(
        self,
        refresh_token: str,
        service: str | None,
        scope_values: Iterable[str],
        return_refresh_token: bool = False,
    ) -> TokenGrant:
        """An access token for the user a refresh token stands for, with today's grants.

        The refresh token is never rotated: docker keeps using the one it stored at login.
        """
        if self.refresh is None:
            raise Unauthorized("refresh tokens are disabled: log in again")
        audience, requests = self._requests(service, scope_values)
        access_files = self.live.current()
        revocations = self.revocations.current()
        if self.shared is not None:  # and those `auth-service tokens` wrote to Redis
            revocations = self.shared.revocations.merged_with(revocations)
        try:
            user = self.refresh.verify(refresh_token, audience, access_files.users, revocations)
        except InvalidRefreshToken as exc:
            log.info("refresh token refused: %s", exc)
            raise Unauthorized(str(exc)) from None
        same = refresh_token if return_refresh_token else None
        return self._sign(user, audience, requests, access_files.anonymous, same)
