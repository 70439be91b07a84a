"""``auth-service users ...`` and ``hash-password``: the users of ``users.json``.

Every edit is made under the file's lock, checked with the service's own parser, and written
atomically (:mod:`auth_service.files.users_edit`); the running service picks it up. Passwords are
read from a hidden prompt or standard input, never from an argument, and never printed.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from auth_service.cli.context import (
    CommandsInOrder,
    ConfigDirectory,
    echo_json,
    json_option,
    or_fail,
    pass_config_dir,
)
from auth_service.files import users_edit
from auth_service.files.check import WEAK_COST
from auth_service.files.users import escape_unprintable, look_alike_warning, shown_name


def _read_password(from_stdin: bool) -> bytes:
    """The new password: the first line of standard input, or typed twice at a hidden prompt."""
    if from_stdin:
        line = sys.stdin.buffer.readline()
        if not line:
            raise click.ClickException("no password on standard input")
        password = line.removesuffix(b"\n").removesuffix(b"\r")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True).encode()
    or_fail(lambda: users_edit.check_password(password))
    return password


def _hash_new_password(config_dir: ConfigDirectory, from_stdin: bool, cost: int | None) -> str:
    if cost is None:
        cost = or_fail(lambda: users_edit.default_cost(config_dir.path))
    if cost < WEAK_COST:
        click.echo(f"warning: bcrypt cost {cost} is weak; use {WEAK_COST} or more", err=True)
    return users_edit.hash_password(_read_password(from_stdin), cost)


password_stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of a prompt.",
)
cost_option = click.option(
    "--cost",
    type=click.IntRange(4, 31),
    help=(
        "bcrypt cost of the new hash (default: BCRYPT_COST, else the most common cost in "
        "users.json, else 12)."
    ),
)
grant_option = click.option(
    "--grant",
    "grants",
    multiple=True,
    metavar="KEY=ACTIONS",
    help="A repository name or pattern and its actions, e.g. 'team/*=pull,push'; 'KEY=' denies "
    "it. Repeatable.",
)
refresh_tokens_option = click.option(
    "--refresh-tokens/--no-refresh-tokens",
    default=None,
    help="Whether a login (docker login) may get a refresh token; without, docker stores the "
    "password, which a Kubernetes imagePullSecret needs. Default: yes.",
)


@click.group("users", cls=CommandsInOrder)
def users() -> None:
    """Add, show, change, list and remove users; set passwords."""


def _read_users(config_dir: ConfigDirectory) -> dict[str, Any]:
    config_dir.require_config()
    return or_fail(lambda: users_edit.read_users(config_dir.users_path))


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _grants_text(repositories: dict[str, list[str]]) -> str:
    return " ".join(f"{key}={','.join(actions) or '-'}" for key, actions in repositories.items())


@users.command("add")
@click.argument("name")
@grant_option
@click.option(
    "--group", "groups", multiple=True, metavar="GROUP", help="A group of groups.json. Repeatable."
)
@click.option("--catalog", is_flag=True, help="Allow listing the catalog (registry:catalog:*).")
@refresh_tokens_option
@cost_option
@password_stdin_option
@pass_config_dir
def users_add(
    config_dir: ConfigDirectory,
    name: str,
    grants: tuple[str, ...],
    groups: tuple[str, ...],
    catalog: bool,
    refresh_tokens: bool | None,
    cost: int | None,
    password_stdin: bool,
) -> None:
    """Add user NAME; the password is asked for, never an argument.

    NAME: 1 to 256 printable characters, without ':' and without a space at either end.
    """
    config_dir.require_config()
    or_fail(lambda: users_edit.check_user_name(name))
    parsed = or_fail(lambda: users_edit.parse_grant_options(grants, name))
    path = config_dir.users_path
    look_alikes: list[str] = []

    def add(document: dict[str, Any], pass_hash: str) -> dict[str, Any]:
        look_alikes[:] = users_edit.look_alikes_of(document | {name: {}}, name)
        return users_edit.add_user(
            document, name, pass_hash, parsed, groups, catalog, refresh_tokens is not False
        )

    or_fail(
        lambda: users_edit.update_with_new_hash(
            path, add, lambda: _hash_new_password(config_dir, password_stdin, cost)
        )
    )
    click.echo(f"added user {shown_name(name)}")
    for other in look_alikes:
        click.echo(f"warning: {look_alike_warning(path, other, name)}", err=True)


@users.command("show")
@click.argument("name")
@json_option
@pass_config_dir
def users_show(config_dir: ConfigDirectory, name: str, as_json: bool) -> None:
    """Show user NAME: groups, grants and flags (never the hash)."""
    document = _read_users(config_dir)
    user = or_fail(lambda: users_edit.describe_user(document, name))
    if as_json:
        echo_json(user)
        return
    lines = [
        f"user: {shown_name(name)}",
        f"groups: {', '.join(user['groups']) or '-'}",
        f"catalog: {_yes_no(user['catalog'])}",
        f"refresh tokens: {_yes_no(user['refresh_tokens'])}",
        "repositories:" + ("" if user["repositories"] else " -"),
        *(
            f"  {key}: {','.join(actions) or '- (denied)'}"
            for key, actions in user["repositories"].items()
        ),
    ]
    for line in lines:
        click.echo(escape_unprintable(line))


@users.command("list")
@json_option
@pass_config_dir
def users_list(config_dir: ConfigDirectory, as_json: bool) -> None:
    """List users: groups, grants and flags (never hashes).

    No character that could move the cursor or reorder the line reaches the terminal raw: names
    are checked when loaded, and whatever is unprintable is escaped all the same.
    """
    listed = users_edit.list_users(_read_users(config_dir))
    if as_json:
        echo_json(listed)
        return
    for user in listed:
        line = (
            f"{user['name']}  groups: {','.join(user['groups']) or '-'}  "
            f"catalog: {_yes_no(user['catalog'])}  "
            f"refresh tokens: {_yes_no(user['refresh_tokens'])}  "
            f"repositories: {_grants_text(user['repositories']) or '-'}"
        )
        click.echo(escape_unprintable(line))


@users.command("set")
@click.argument("name")
@grant_option
@click.option(
    "--revoke",
    "revoked",
    multiple=True,
    metavar="KEY",
    help="Remove the grant of KEY (then another key or the anonymous rule decides). Repeatable.",
)
@click.option("--group", "joined", multiple=True, metavar="GROUP", help="Join a group. Repeatable.")
@click.option(
    "--no-group", "left", multiple=True, metavar="GROUP", help="Leave a group. Repeatable."
)
@click.option(
    "--catalog/--no-catalog", default=None, help="Allow listing the catalog, or stop allowing it."
)
@refresh_tokens_option
@pass_config_dir
def users_set(
    config_dir: ConfigDirectory,
    name: str,
    grants: tuple[str, ...],
    revoked: tuple[str, ...],
    joined: tuple[str, ...],
    left: tuple[str, ...],
    catalog: bool | None,
    refresh_tokens: bool | None,
) -> None:
    """Change user NAME's grants, groups and flags; not the password.

    --grant replaces the actions of its key; what no option names stays as it is. Nothing is
    written if any change can't be made (a key NAME has no grant for, a group NAME isn't in).
    """
    config_dir.require_config()
    change = users_edit.UserChange(
        grants=or_fail(lambda: users_edit.parse_grant_options(grants, name)),
        revoke=revoked,
        join=joined,
        leave=left,
        catalog=catalog,
        refresh_tokens=refresh_tokens,
    )
    if change.is_empty():
        raise click.UsageError(
            "nothing to change: give --grant, --revoke, --group, --no-group, --catalog, "
            "--no-catalog, --refresh-tokens or --no-refresh-tokens"
        )
    or_fail(
        lambda: users_edit.update_users(
            config_dir.users_path, lambda doc: users_edit.change_user(doc, name, change)
        )
    )
    click.echo(f"changed user {shown_name(name)}")
    if refresh_tokens is False:
        click.echo(
            "note: refresh tokens issued until now still work; "
            "`auth-service tokens revoke-user NAME` ends them",
            err=True,
        )


@users.command("passwd")
@click.argument("name")
@cost_option
@password_stdin_option
@pass_config_dir
def users_passwd(
    config_dir: ConfigDirectory, name: str, cost: int | None, password_stdin: bool
) -> None:
    """Set the password of user NAME (their refresh tokens stop working)."""
    config_dir.require_config()
    or_fail(
        lambda: users_edit.update_with_new_hash(
            config_dir.users_path,
            lambda doc, pass_hash: users_edit.set_password(doc, name, pass_hash),
            lambda: _hash_new_password(config_dir, password_stdin, cost),
        )
    )
    click.echo(f"changed the password of {shown_name(name)}")


@users.command("remove")
@click.argument("name")
@pass_config_dir
def users_remove(config_dir: ConfigDirectory, name: str) -> None:
    """Remove user NAME (their refresh tokens stop working)."""
    config_dir.require_config()
    or_fail(
        lambda: users_edit.update_users(
            config_dir.users_path, lambda doc: users_edit.remove_user(doc, name)
        )
    )
    click.echo(f"removed user {shown_name(name)}")


@click.command("hash-password")
@cost_option
@password_stdin_option
@pass_config_dir
def hash_password(config_dir: ConfigDirectory, cost: int | None, password_stdin: bool) -> None:
    """Print a bcrypt hash of a password, for a hand edit."""
    click.echo(_hash_new_password(config_dir, password_stdin, cost))
