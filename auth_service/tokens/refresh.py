"""Refresh tokens: what ``docker login`` stores instead of the password.

A refresh token carries identity, never permissions: the user, the registry service it was issued
for, its own ID, issue and expiry times, and a fingerprint of the user's password hash. Each use
looks the user up again, so ACL changes apply to the next access token, and a changed password
or a removed user voids every refresh token issued before. Operators revoke one token or all of
a user's through ``revocations.json``.

Format: ``rt1.<base64url JSON claims>.<base64url HMAC-SHA256>``. The HMAC key is derived from the
signing key, so every worker and instance with the same key agrees without shared state, and a
key rotation voids all refresh tokens (users log in again). It is not a JWT of the registry's
kind: the registry cannot read it, so a refresh token is useless as an access token, and an
access token fails the HMAC here.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from auth_service.files.revocations import Revocations
from auth_service.files.users import User, UserDirectory
from auth_service.records.json_text import wire_json
from auth_service.tokens.encoding import b64url, b64url_decode

VERSION = "rt1"
KEY_LABEL = b"auth_service refresh token key v1"
_FINGERPRINT_BYTES = 12
MAX_TOKEN_LENGTH = 2048


class InvalidRefreshToken(Exception):
    """The refresh token can't be used; the message is safe to show the client."""


@dataclass(frozen=True)
class RefreshClaims:
    """What a refresh token says."""

    subject: str
    service: str
    token_id: str
    issued_at: int
    expires_at: int
    password_fingerprint: str


class RefreshTokenCodec:
    """Issues and checks refresh tokens with one key and lifetime."""

    def __init__(self, key: bytes, lifetime: int, clock: Callable[[], float] = time.time) -> None:
        self._key = key
        self.lifetime = lifetime
        self._clock = clock

    def _fingerprint(self, user: User) -> str:
        digest = hmac.new(self._key, b"password:" + user.pass_hash, hashlib.sha256).digest()
        return b64url(digest[:_FINGERPRINT_BYTES])

    def _sign(self, payload: str) -> str:
        return b64url(hmac.new(self._key, f"{VERSION}.{payload}".encode(), hashlib.sha256).digest())

    def issue(self, user: User, service: str) -> tuple[str, RefreshClaims]:
        """A new refresh token for ``user`` at ``service``, and its claims."""
        now = int(self._clock())
        claims = RefreshClaims(
            user.name,
            service,
            secrets.token_urlsafe(12),
            now,
            now + self.lifetime,
            self._fingerprint(user),
        )
        payload = b64url(
            wire_json(
                {
                    "sub": claims.subject,
                    "aud": claims.service,
                    "jti": claims.token_id,
                    "iat": claims.issued_at,
                    "exp": claims.expires_at,
                    "pwd": claims.password_fingerprint,
                }
            ).encode()
        )
        return f"{VERSION}.{payload}.{self._sign(payload)}", claims

    def read(self, token: str) -> RefreshClaims:
        """The claims of an authentic, unexpired token; raises InvalidRefreshToken."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidRefreshToken("invalid refresh token")
        version, _, rest = token.partition(".")
        payload, _, signature = rest.partition(".")
        if version != VERSION or not hmac.compare_digest(
            signature.encode(), self._sign(payload).encode()
        ):
            raise InvalidRefreshToken("invalid refresh token")
        try:
            data = json.loads(b64url_decode(payload))
            claims = RefreshClaims(
                str(data["sub"]),
                str(data["aud"]),
                str(data["jti"]),
                int(data["iat"]),
                int(data["exp"]),
                str(data["pwd"]),
            )
        except (binascii.Error, ValueError, KeyError, TypeError):
            raise InvalidRefreshToken("invalid refresh token") from None
        if self._clock() >= claims.expires_at:
            raise InvalidRefreshToken("refresh token expired: log in again")
        return claims

    def verify(
        self, token: str, service: str, users: UserDirectory, revocations: Revocations
    ) -> User:
        """The user a refresh token stands for, if it is still good for ``service``."""
        claims = self.read(token)
        if claims.service != service:
            raise InvalidRefreshToken("refresh token was issued for another service")
        user = users.get(claims.subject)
        if user is None or not hmac.compare_digest(
            claims.password_fingerprint, self._fingerprint(user)
        ):
            raise InvalidRefreshToken("refresh token revoked: log in again")
        if revocations.revokes(claims.token_id, claims.subject, claims.issued_at):
            raise InvalidRefreshToken("refresh token revoked: log in again")
        if not user.refresh_tokens:  # turned off for this user since: so are the tokens
            raise InvalidRefreshToken("refresh tokens are off for this user: log in again")
        return user
