"""``auth-service tokens ...``: revoke refresh tokens, one or all of a user's.

Revocations go where the running service reads them: to Redis when ``REDIS_URL`` is set (every
instance sees them within a second), else to ``revocations.json``, which every worker re-reads.
A revocation that can't be written fails the command with one line; it never falls back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import click

from auth_service.cli.context import CommandsInOrder, ConfigDirectory, pass_config_dir
from auth_service.files.revocations import revoke_token, revoke_user
from auth_service.files.users import escape_unprintable, shown_name
from auth_service.tokens.refresh import VERSION as REFRESH_TOKEN_VERSION
from auth_service.tokens.refresh import InvalidRefreshToken

if TYPE_CHECKING:
    from auth_service.service import TokenService
    from auth_service.shared.revocations import RevocationsInRedis

T = TypeVar("T")


def _revoked_in_redis(service: TokenService, revoke: Callable[[RevocationsInRedis], T]) -> T:
    """``revoke(the revocations in Redis)``, or one line and exit status 1 if Redis fails."""
    from auth_service.shared.connection import RedisUnavailable

    assert service.shared is not None
    try:
        return revoke(service.shared.revocations)
    except RedisUnavailable as exc:
        raise click.ClickException(f"not revoked: {exc}") from None


@click.group("tokens", cls=CommandsInOrder)
def tokens() -> None:
    """Revoke refresh tokens (what `docker login` stores)."""


@tokens.command("revoke")
@click.argument("token_or_id")
@pass_config_dir
def tokens_revoke(config_dir: ConfigDirectory, token_or_id: str) -> None:
    """Revoke one refresh token, given as itself or its ID.

    The ID is in the log line of its issue: "refresh token issued: ... id=ID".
    """
    service = config_dir.service()
    if token_or_id.startswith(REFRESH_TOKEN_VERSION + "."):
        if service.refresh is None:
            raise click.ClickException("refresh tokens are disabled: nothing to revoke")
        try:
            claims = service.refresh.read(token_or_id)
        except InvalidRefreshToken as exc:
            raise click.ClickException(f"not revoked: {exc}") from None
        token_id, expires_at = claims.token_id, claims.expires_at
    else:
        # An ID alone doesn't say when the token expires: keep it for the longest lifetime.
        token_id = token_or_id
        expires_at = int(time.time()) + service.settings.refresh_token_lifetime
    if service.shared is not None:
        _revoked_in_redis(service, lambda redis: redis.revoke_token(token_id, expires_at))
    else:
        revoke_token(service.settings.revocations_path, token_id, expires_at)
    click.echo(escape_unprintable(f"revoked refresh token {token_id}"))


@tokens.command("revoke-user")
@click.argument("username")
@pass_config_dir
def tokens_revoke_user(config_dir: ConfigDirectory, username: str) -> None:
    """Revoke every refresh token USERNAME holds now.

    A later login gets a new one: to keep USERNAME out, remove the user or change the password.
    """
    service = config_dir.service()
    if service.shared is not None:
        _revoked_in_redis(service, lambda redis: redis.revoke_user(username))
    else:
        revoke_user(service.settings.revocations_path, username)
    click.echo(f"revoked all refresh tokens of {shown_name(username)} issued until now")
