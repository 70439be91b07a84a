"""The operator's command line: ``auth-service`` (or ``flask --app auth_service ...``).

Commands read the same config directory as the service (``$AUTH_SERVICE_CONFIG_DIR`` or
``config/``) and run the same code.
"""

from __future__ import annotations

import time

import click
from flask import Flask, current_app
from flask.cli import AppGroup, FlaskGroup

from .errors import ConfigError
from .explain import explain_command
from .refresh_tokens import VERSION as REFRESH_TOKEN_VERSION
from .refresh_tokens import InvalidRefreshToken
from .revocations import revoke_token, revoke_user
from .service import TokenService
from .views import EXTENSION


def _create_app() -> Flask:
    from . import create_app

    try:
        return create_app()
    except ConfigError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None


def _service() -> TokenService:
    return current_app.extensions[EXTENSION]


tokens = AppGroup("tokens", help="Revoke refresh tokens (what `docker login` stores).")


@tokens.command("revoke")
@click.argument("token_or_id")
def revoke_command(token_or_id: str) -> None:
    """Revoke one refresh token, given as the token itself or its ID (from the log)."""
    service = _service()
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
    revoke_token(service.settings.revocations_path, token_id, expires_at)
    click.echo(f"revoked refresh token {token_id}")


@tokens.command("revoke-user")
@click.argument("username")
def revoke_user_command(username: str) -> None:
    """Revoke every refresh token USERNAME holds now (a later login gets a new one)."""
    service = _service()
    revoke_user(service.settings.revocations_path, username)
    click.echo(f"revoked all refresh tokens of {username!r} issued until now")


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=False)
def cli() -> None:
    """Operate the registry token service."""


cli.add_command(tokens)
cli.add_command(explain_command)


def main() -> None:
    """The ``auth-service`` console script."""
    cli(prog_name="auth-service")
