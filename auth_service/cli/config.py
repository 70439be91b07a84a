"""``auth-service config check``: every problem of the config directory, one line each.

It works on the files alone, without building the app, so that it still runs, and says what to
fix, when the service would refuse to start.
"""

from __future__ import annotations

import click

from auth_service.cli.context import ConfigDirectory, echo_json, json_option, pass_config_dir
from auth_service.files.check import check_config
from auth_service.files.users import escape_unprintable


@click.group("config")
def config() -> None:
    """Check the configuration."""


@config.command("check")
@json_option
@pass_config_dir
@click.pass_context
def config_check(ctx: click.Context, config_dir: ConfigDirectory, as_json: bool) -> None:
    """Check every file, the key and the bcrypt costs.

    One line per problem or warning, as the service would see it. Exits 1 if there is a problem
    (warnings alone pass). With --json: {"ok", "problems", "findings": [{"message",
    "problem"}]}.
    """
    # A directory without config.py is still checked (the other files may be what to fix), but
    # one holding none of the files is most likely the wrong directory.
    config_dir.require_config(any_file=True)
    findings = check_config(config_dir.path)
    problems = sum(finding.problem for finding in findings)
    if as_json:
        echo_json(
            {
                "ok": not problems,
                "problems": problems,
                "findings": [{"message": f.message, "problem": f.problem} for f in findings],
            }
        )
        ctx.exit(1 if problems else 0)
    for finding in findings:
        click.echo(escape_unprintable(str(finding)))
    if problems:
        raise click.ClickException(f"{problems} problem{'s' if problems > 1 else ''} found")
    click.echo("configuration OK")
