"""``explain``: what a user (or an anonymous client) would be granted, and which rule decided.

    $ flask --app auth_service explain alice repository:team/app:pull,push registry:catalog:*
    repository:team/app: pull,push  (users.json: alice: "team/*")
    registry:catalog: nothing  (catalog: needs "catalog": true on the user or a group)

It reads the files the running service reads, through the same :class:`.live_config.LiveConfig`,
and decides with the same :func:`.policy.grant_access`; it checks no password.
"""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from auth_service.access.policy import grant_access
from auth_service.access.scopes import ScopeError, parse_scopes
from auth_service.http.token_endpoint import EXTENSION
from auth_service.service import TokenService


@click.command("explain")
@click.option("--anonymous", is_flag=True, help="Explain for a client without credentials.")
@click.argument("user_and_scopes", metavar="[USER] SCOPE...", nargs=-1, required=True)
@with_appcontext
def explain_command(anonymous: bool, user_and_scopes: tuple[str, ...]) -> None:
    """Show what USER (or --anonymous) would be granted for each SCOPE, and why.

    A SCOPE is type:name:actions, as clients send it, e.g. repository:team/app:pull,push.
    """
    service: TokenService = current_app.extensions[EXTENSION]
    user_name, scope_values = (
        (None, user_and_scopes)
        if anonymous
        else (
            user_and_scopes[0],
            user_and_scopes[1:],
        )
    )
    if not scope_values:
        raise click.UsageError("give at least one scope, e.g. repository:team/app:pull")
    try:
        requests = parse_scopes(scope_values)
    except ScopeError as exc:
        raise click.BadParameter(str(exc), param_hint="SCOPE") from None
    files = service.live.current()
    if not service.live.last_reload_ok:
        click.echo("warning: the files on disk are broken; explaining the last good ones", err=True)
    user = None
    if user_name is not None:
        user = files.users.get(user_name)
        if user is None:
            raise click.ClickException(f"unknown user {user_name!r}")
    elif not service.settings.anonymous_access:
        click.echo("note: anonymous access is disabled: the service answers 401", err=True)
    for grant in grant_access(user, requests, files.anonymous):
        granted = ",".join(grant.actions) or "nothing"
        click.echo(f"{grant.type}:{grant.name}: {granted}  ({grant.reason})")
