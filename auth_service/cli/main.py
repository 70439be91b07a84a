"""``auth-service``: the operator's command line, one module per command group.

Every command works on one config directory, ``--config-dir`` (``$AUTH_SERVICE_CONFIG_DIR``,
else ``config``), and runs the service's own code on it: the same loaders, the same policy.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

from auth_service.cli.config import config
from auth_service.cli.context import CommandsInOrder, ConfigDirectory
from auth_service.cli.dev import dev
from auth_service.cli.explain import explain
from auth_service.cli.init import init
from auth_service.cli.keys import keys
from auth_service.cli.tokens import tokens
from auth_service.cli.users import hash_password, users
from auth_service.files.settings import CONFIG_DIR_ENV, CONFIG_FILE, DEFAULT_CONFIG_DIR

PACKAGE = "registry-token-service"  # setup.cfg's name: --version is its version


class _ConfigDirOption(click.Option):
    """``--config-dir``, whose help ends with the directory in use and whether it holds a
    configuration: the first thing to know when a command finds nobody."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        if record is None:
            return None
        # Eager, so `--config-dir X --help` shows X; else the environment or the default.
        given = ctx.params.get(self.name) or os.environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR
        path = Path(given).absolute()
        missing = "" if (path / CONFIG_FILE).is_file() else f" (no {CONFIG_FILE} there)"
        # "\b": a paragraph click doesn't rewrap, so that the path is never broken at a hyphen.
        return record[0], f"{record[1]}\n\n\b\nIn use: {path}{missing}"


@click.group(cls=CommandsInOrder)
@click.option(
    "--config-dir",
    cls=_ConfigDirOption,
    type=click.Path(file_okay=False, path_type=Path),
    envvar=CONFIG_DIR_ENV,
    default=DEFAULT_CONFIG_DIR,
    show_default=True,
    show_envvar=True,
    is_eager=True,
    help="The directory of config.py, users.json and the other files.",
)
@click.version_option(package_name=PACKAGE, prog_name="auth-service")
@click.pass_context
def cli(ctx: click.Context, config_dir: Path) -> None:
    """Operate the registry token service: users, keys, refresh tokens, the configuration."""
    ctx.obj = ConfigDirectory(config_dir)


for command in (init, users, hash_password, keys, config, explain, tokens, dev):
    cli.add_command(command)


def main() -> None:
    """The ``auth-service`` console script."""
    logging.basicConfig(format="%(levelname)s: %(message)s")  # the loaders' warnings, on stderr
    cli(prog_name="auth-service")
