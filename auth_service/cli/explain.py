"""``auth-service explain``: what a user (or an anonymous client) would be granted, and which
rule decided.

    $ auth-service explain alice repository:team/app:pull,push registry:catalog:*
    repository:team/app: pull,push  (users.json: alice: "team/*")
    registry:catalog: nothing  (catalog: needs "catalog": true on the user or a group)

It reads the files the running service reads, through the same
:class:`auth_service.files.live_config.LiveConfig`, and decides with the same
:func:`auth_service.access.policy.grant_access`; it checks no password.
"""

from __future__ import annotations

import click

from auth_service.access.policy import grant_access
from auth_service.access.scopes import ScopeError, parse_scopes
from auth_service.cli.context import ConfigDirectory, echo_json, json_option, pass_config_dir
from auth_service.files.users import escape_unprintable, shown_name


@click.command("explain")
@click.option("--anonymous", is_flag=True, help="Explain for a client without credentials.")
@json_option
@click.argument("user_and_scopes", metavar="[USER] SCOPE...", nargs=-1, required=True)
@pass_config_dir
def explain(
    config_dir: ConfigDirectory, anonymous: bool, as_json: bool, user_and_scopes: tuple[str, ...]
) -> None:
    """Show what a user would be granted, and why.

    For each SCOPE: what USER (or an anonymous client) would be granted, and the rule that
    decided.

    A SCOPE is type:name:actions, as clients send it, e.g. repository:team/app:pull,push.
    With --json: [{"type", "name", "actions", "reason"}], one per resource.
    """
    if anonymous:
        user_name, scope_values = None, user_and_scopes
    else:
        user_name, scope_values = user_and_scopes[0], user_and_scopes[1:]
    if not scope_values:
        raise click.UsageError("give at least one scope, e.g. repository:team/app:pull")
    try:
        requests = parse_scopes(scope_values)
    except ScopeError as exc:
        raise click.BadParameter(str(exc), param_hint="SCOPE") from None
    service = config_dir.service()
    files = service.live.current()
    if not service.live.last_reload_ok:
        click.echo("warning: the files on disk are broken; explaining the last good ones", err=True)
    user = None
    if user_name is not None:
        user = files.users.get(user_name)
        if user is None:
            raise click.ClickException(f"unknown user {shown_name(user_name)}")
    elif not service.settings.anonymous_access:
        click.echo("note: anonymous access is disabled: the service answers 401", err=True)
    grants = grant_access(user, requests, files.anonymous)
    if as_json:
        echo_json(
            [
                {
                    "type": grant.type,
                    "name": grant.name,
                    "actions": list(grant.actions),
                    "reason": str(grant.reason),
                }
                for grant in grants
            ]
        )
        return
    for grant in grants:
        granted = ",".join(grant.actions) or "nothing"
        click.echo(escape_unprintable(f"{grant.type}:{grant.name}: {granted}  ({grant.reason})"))
