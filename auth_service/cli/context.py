"""What the commands of ``auth-service`` share: the config directory they work on, the service
built from it, one-line errors, and ``--json`` output."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from auth_service.errors import ConfigError
from auth_service.files import users_edit
from auth_service.files.settings import (
    CONFIG_FILE,
    GROUPS_FILE,
    REPOSITORIES_FILE,
    USERS_FILE,
    Settings,
    load_settings,
)
from auth_service.files.users import escape_unprintable

if TYPE_CHECKING:
    from flask import Flask

    from auth_service.service import TokenService

T = TypeVar("T")


def or_fail(action: Callable[[], T]) -> T:
    """``action()``, with what an operator can fix (bad files, a refused edit, a missing file)
    turned into click's one-line ``Error: ...`` (unprintable characters escaped: file contents
    may hold anything) and exit status 1."""
    try:
        return action()
    except (ConfigError, users_edit.UserError, ValueError, OSError) as exc:
        raise click.ClickException(escape_unprintable(str(exc))) from None


@dataclass(frozen=True)
class ConfigDirectory:
    """The config directory a command works on (``--config-dir``)."""

    path: Path

    @property
    def users_path(self) -> Path:
        """Its ``users.json``, which the user commands edit."""
        return self.path / USERS_FILE

    def has_config_py(self) -> bool:
        """Whether it holds a ``config.py``."""
        return (self.path / CONFIG_FILE).is_file()

    def require_config(self, *, any_file: bool = False) -> None:
        """Stop with one line unless the directory holds ``config.py`` (or, with ``any_file``,
        any of the configuration files): a mistyped directory is then an error, never an empty
        answer or a new ``users.json`` in the wrong place."""
        names = (CONFIG_FILE, USERS_FILE, REPOSITORIES_FILE, GROUPS_FILE)
        if self.has_config_py() or (any_file and any((self.path / n).is_file() for n in names)):
            return
        raise click.ClickException(
            f"{self.path}: no configuration here (no {CONFIG_FILE}); give --config-dir or set "
            "AUTH_SERVICE_CONFIG_DIR, or create one with `auth-service init`"
        )

    def settings(self) -> Settings:
        """``config.py`` and the environment, as the service reads them."""
        self.require_config()
        return or_fail(lambda: load_settings(self.path))

    def app(self) -> Flask:
        """The app the service builds from this directory, as uWSGI would."""
        self.require_config()
        from auth_service import create_app

        try:
            return create_app({"CONFIG_DIR": self.path})
        except ConfigError as exc:
            raise click.ClickException(escape_unprintable(f"configuration error: {exc}")) from None

    def service(self, app: Flask | None = None) -> TokenService:
        """The token service of ``app`` (by default, :meth:`app`): its settings, signer, live
        files and refresh tokens."""
        from auth_service.http import EXTENSION

        return (app or self.app()).extensions[EXTENSION]


pass_config_dir = click.make_pass_decorator(ConfigDirectory)


class CommandsInOrder(click.Group):
    """A group whose help lists its commands in the order they were added (the order an
    operator needs them in), not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document, for a script."
)


def echo_json(document: Any) -> None:
    """Print ``document`` as indented JSON, every unprintable character inside its strings as a
    ``\\u`` escape (names from the files reach the terminal escaped, as in the text output)."""
    text = json.dumps(document, indent=2, ensure_ascii=False)
    # json.dumps writes no raw newline but those of its indentation.
    click.echo(
        "".join(
            char if char == "\n" or char.isprintable() else json.dumps(char)[1:-1] for char in text
        )
    )
