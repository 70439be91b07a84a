"""The operator's command line: ``auth-service`` (or ``flask --app auth_service ...``).

Commands read the same config directory as the service (``$AUTH_SERVICE_CONFIG_DIR`` or
``config/``) and run the same code.
"""

from __future__ import annotations

import json
import logging
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup, FlaskGroup

from auth_service.access.explain import explain_command
from auth_service.errors import ConfigError
from auth_service.files import users_edit as user_admin
from auth_service.files.check import WEAK_COST, check_config
from auth_service.files.revocations import revoke_token, revoke_user
from auth_service.files.settings import CONFIG_FILE, USERS_FILE, config_dir_from_env, load_settings
from auth_service.files.users import escape_unprintable, look_alike_warning, shown_name
from auth_service.http.token_endpoint import EXTENSION
from auth_service.service import TokenService
from auth_service.tokens.keys import jwks, write_signing_pair
from auth_service.tokens.refresh import VERSION as REFRESH_TOKEN_VERSION
from auth_service.tokens.refresh import InvalidRefreshToken


def _create_app() -> Flask:
    from auth_service import create_app

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
    click.echo(f"revoked all refresh tokens of {shown_name(username)} issued until now")


# The commands below work on the files without building the app, so that they still run when
# the configuration is broken (config check; users with a broken key) or incomplete (keys).


def _config_dir() -> Path:
    return config_dir_from_env()


def _or_fail(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except (ConfigError, user_admin.UserError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


def _read_password(from_stdin: bool) -> bytes:
    """The new password: the first line of standard input, or typed twice at a hidden prompt."""
    if from_stdin:
        line = sys.stdin.buffer.readline()
        if not line:
            raise click.ClickException("no password on standard input")
        password = line.removesuffix(b"\n").removesuffix(b"\r")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True).encode()
    _or_fail(lambda: user_admin.check_password(password))
    return password


def _hash_new_password(from_stdin: bool, cost: int | None) -> str:
    if cost is None:
        cost = _or_fail(lambda: user_admin.default_cost(_config_dir()))
    if cost < WEAK_COST:
        click.echo(f"warning: bcrypt cost {cost} is weak; use {WEAK_COST} or more", err=True)
    return user_admin.hash_password(_read_password(from_stdin), cost)


password_stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of a prompt.",
)
cost_option = click.option(
    "--cost",
    type=click.IntRange(4, 31),
    help="bcrypt cost of the new hash (default: BCRYPT_COST, else 12).",
)


@click.group("users")
def users() -> None:
    """Add, remove and list users of users.json, and set their passwords."""


@users.command("add")
@click.argument("name")
@click.option(
    "--grant",
    "grants",
    multiple=True,
    metavar="KEY=ACTIONS",
    help="Repository name or pattern and its actions, e.g. 'team/*=pull,push'. Repeatable.",
)
@click.option("--group", "groups", multiple=True, help="A group of groups.json. Repeatable.")
@click.option("--catalog", is_flag=True, help="Allow listing the catalog (registry:catalog:*).")
@cost_option
@password_stdin_option
def users_add(
    name: str,
    grants: tuple[str, ...],
    groups: tuple[str, ...],
    catalog: bool,
    cost: int | None,
    password_stdin: bool,
) -> None:
    """Add user NAME; the password is asked for (never an argument).

    NAME: 1 to 256 printable characters, without ':' and without a space at either end.
    """
    _or_fail(lambda: user_admin.check_user_name(name))
    parsed = _or_fail(lambda: user_admin.parse_grant_options(grants, name))
    path = _config_dir() / USERS_FILE
    look_alikes: list[str] = []

    def add(document: dict[str, Any], pass_hash: str) -> dict[str, Any]:
        look_alikes[:] = user_admin.look_alikes_of(document | {name: {}}, name)
        return user_admin.add_user(document, name, pass_hash, parsed, groups, catalog)

    _or_fail(
        lambda: user_admin.update_with_new_hash(
            path, add, lambda: _hash_new_password(password_stdin, cost)
        )
    )
    click.echo(f"added user {shown_name(name)}")
    for other in look_alikes:
        click.echo(f"warning: {look_alike_warning(path, other, name)}", err=True)


@users.command("passwd")
@click.argument("name")
@cost_option
@password_stdin_option
def users_passwd(name: str, cost: int | None, password_stdin: bool) -> None:
    """Set the password of user NAME (their refresh tokens stop working)."""
    _or_fail(
        lambda: user_admin.update_with_new_hash(
            _config_dir() / USERS_FILE,
            lambda doc, pass_hash: user_admin.set_password(doc, name, pass_hash),
            lambda: _hash_new_password(password_stdin, cost),
        )
    )
    click.echo(f"changed the password of {shown_name(name)}")


@users.command("remove")
@click.argument("name")
def users_remove(name: str) -> None:
    """Remove user NAME (their refresh tokens stop working)."""
    path = _config_dir() / USERS_FILE
    _or_fail(lambda: user_admin.update_users(path, lambda doc: user_admin.remove_user(doc, name)))
    click.echo(f"removed user {shown_name(name)}")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of lines.")
def users_list(as_json: bool) -> None:
    """List users with their groups, grants and catalog right (never their hashes).

    No character that could move the cursor or reorder the line reaches the terminal raw: names
    are checked when loaded, and whatever is unprintable is escaped all the same.
    """
    document = _or_fail(lambda: user_admin.read_users(_config_dir() / USERS_FILE))
    listed = user_admin.list_users(document)
    if as_json:
        click.echo(_json_escape_unprintable(json.dumps(listed, indent=2, ensure_ascii=False)))
        return
    for user in listed:
        grants = " ".join(
            f"{key}={','.join(actions) or '-'}" for key, actions in user["repositories"].items()
        )
        line = (
            f"{user['name']}  groups: {','.join(user['groups']) or '-'}  "
            f"catalog: {'yes' if user['catalog'] else 'no'}  repositories: {grants or '-'}"
        )
        click.echo(escape_unprintable(line))


def _json_escape_unprintable(text: str) -> str:
    """JSON text with every unprintable character inside its strings as a \\u escape; the
    newlines of its indentation stay (json.dumps writes no other raw one)."""
    return "".join(
        char if char == "\n" or char.isprintable() else json.dumps(char)[1:-1] for char in text
    )


@click.command("hash-password")
@cost_option
@password_stdin_option
def hash_password_command(cost: int | None, password_stdin: bool) -> None:
    """Print a bcrypt hash of a password, for editing users.json by hand."""
    click.echo(_hash_new_password(password_stdin, cost))


@click.group("keys")
def keys() -> None:
    """Make a signing key and certificate; publish certificates as a JWKS."""


def _configured_paths() -> tuple[Path | None, Path | None]:
    """KEY_PATH and CERT_PATH of config.py, or (None, None) if there is no config.py."""
    config_dir = _config_dir()
    if not (config_dir / CONFIG_FILE).exists():
        return None, None
    settings = _or_fail(lambda: load_settings(config_dir))
    return settings.key_path, settings.cert_path


@keys.command("generate")
@click.option("--key", "key_path", type=click.Path(path_type=Path), help="Default: KEY_PATH.")
@click.option("--cert", "cert_path", type=click.Path(path_type=Path), help="Default: CERT_PATH.")
@click.option("--name", default="registry-token-service", show_default=True, help="Certificate CN.")
@click.option(
    "--days", type=click.IntRange(1, 36500), default=365, show_default=True, help="Lifetime."
)
@click.option("--force", is_flag=True, help="Replace existing files.")
def keys_generate(
    key_path: Path | None, cert_path: Path | None, name: str, days: int, force: bool
) -> None:
    """Write a new EC P-256 signing key (mode 0600) and a self-signed certificate for it.

    Files replaced with --force keep their owner, group and mode, less any access for all users
    to the key.
    """
    if key_path is None or cert_path is None:
        configured_key, configured_cert = _configured_paths()
        key_path, cert_path = key_path or configured_key, cert_path or configured_cert
        if key_path is None or cert_path is None:
            raise click.UsageError("give --key and --cert (config.py names neither)")
    cert = _or_fail(lambda: write_signing_pair(key_path, cert_path, name, days, force))
    key_mode = stat.S_IMODE(key_path.stat().st_mode)
    click.echo(f"wrote {key_path} (mode {key_mode:04o}) and {cert_path}: CN={name}, ", nl=False)
    click.echo(f"valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")


@keys.command("jwks")
@click.option(
    "--cert",
    "cert_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A PEM certificate or bundle. Repeatable (old and new, while rotating). "
    "Default: CERT_PATH.",
)
def keys_jwks(cert_paths: tuple[Path, ...]) -> None:
    """Print the JWKS of certificates (registry 3's auth.token.jwks file)."""
    if not cert_paths:
        configured = _configured_paths()[1]
        if configured is None:
            raise click.UsageError("give --cert (config.py sets no CERT_PATH)")
        cert_paths = (configured,)
    click.echo(json.dumps(_or_fail(lambda: jwks(cert_paths)), indent=2))


@click.group("config")
def config() -> None:
    """Check the configuration."""


@config.command("check")
def config_check() -> None:
    """Check every file, the key and certificate, and bcrypt costs; one line per problem."""
    findings = check_config(_config_dir())
    for finding in findings:
        click.echo(str(finding))
    problems = sum(finding.problem for finding in findings)
    if problems:
        raise click.ClickException(f"{problems} problem{'s' if problems > 1 else ''} found")
    click.echo("configuration OK")


class _CommandLine(FlaskGroup):
    """Flask's group, minus building the app to list commands: all of them are registered here,
    and `--help` must work while the configuration is broken."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return click.Group.list_commands(self, ctx)


@click.group(cls=_CommandLine, create_app=_create_app, add_default_commands=False)
def cli() -> None:
    """Operate the registry token service."""


for command in (users, hash_password_command, keys, config, tokens, explain_command):
    cli.add_command(command)


def main() -> None:
    """The ``auth-service`` console script."""
    logging.basicConfig(format="%(levelname)s: %(message)s")  # the loaders' warnings, on stderr
    cli(prog_name="auth-service")
