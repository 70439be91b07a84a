"""Editing ``users.json`` for the command line: add, change, re-password, remove and list users.

The edits are pure functions of the decoded document; :func:`update_users` applies one under the
file's lock, checks the result with the service's own parser (so it never writes a file the
service would refuse), and writes it atomically in the file's own layout and key order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt

from auth_service.access.rules import parse_grants
from auth_service.errors import ConfigError
from auth_service.files.atomic import locked_update
from auth_service.files.groups import GROUPS_FILE, load_groups
from auth_service.files.jsonfile import decode_json, read_json
from auth_service.files.settings import CONFIG_FILE, USERS_FILE, load_settings
from auth_service.files.users import (
    BCRYPT_MAX_PASSWORD_BYTES,
    USER_NAME_RULE,
    VALIDATION_ONLY_COST,
    hash_costs,
    name_skeleton,
    parse_users,
    rehash_target,
    shown_name,
    user_name_problem,
)

NEW_FILE_MODE = 0o600  # it holds password hashes
DEFAULT_INDENT = "    "  # as config/users.json.example
# A well-formed hash standing in for one not made yet, to check an edit before asking for the
# password: nobody's password matches it.
PLACEHOLDER_HASH = "$2b$04$" + "." * 53


class UserError(Exception):
    """An edit that cannot be made: the user exists already, or doesn't."""


def default_cost(config_dir: Path) -> int:
    """The cost of new hashes: the one logins rehash to (:func:`.users.rehash_target`), so a new
    user's hash is never rehashed at once: ``BCRYPT_COST`` if ``config.py`` sets it, else the
    cost most hashes in ``users.json`` have, else :data:`.users.DEFAULT_BCRYPT_COST`."""
    configured = None
    if (config_dir / CONFIG_FILE).exists():
        configured = load_settings(config_dir).bcrypt_cost
    users_path = config_dir / USERS_FILE
    if configured is None and users_path.exists():
        return rehash_target(hash_costs(read_json(users_path)), None)
    return rehash_target({}, configured)


def check_password(password: bytes) -> None:
    """Raise ValueError for a password the service could never accept (bcrypt's limits)."""
    if not password:
        raise ValueError("the password is empty")
    if len(password) > BCRYPT_MAX_PASSWORD_BYTES:
        raise ValueError(
            f"the password is {len(password)} bytes long; bcrypt uses at most "
            f"{BCRYPT_MAX_PASSWORD_BYTES}"
        )
    if b"\0" in password:
        raise ValueError("the password contains a NUL byte, which bcrypt cannot hash")
    try:
        password.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the password is not UTF-8, as clients send it") from None


def hash_password(password: bytes, cost: int) -> str:
    """A bcrypt hash (``$2b$``) of ``password``, after :func:`check_password`."""
    check_password(password)
    return bcrypt.hashpw(password, bcrypt.gensalt(cost)).decode("ascii")


def parse_grant_options(values: Iterable[str], name: str) -> dict[str, list[str]]:
    """``["team/app=pull,push", "*=pull"]`` → ``{"team/app": ["pull", "push"], "*": ["pull"]}``.

    Checked by the service's own grant parser; ``KEY=`` (no actions) denies. A key given twice
    gets the actions of both.
    """
    grants: dict[str, list[str]] = {}
    for value in values:
        key, equals, actions = value.partition("=")
        if not equals or not key:
            raise ConfigError("--grant", repr(value), "must be KEY=ACTIONS, e.g. team/app=pull")
        listed = grants.setdefault(key, [])
        for action in (a.strip() for a in actions.split(",")):
            if action and action not in listed:
                listed.append(action)
    parse_grants(Path("--grant"), f"user {name!r}", grants)
    return grants


def check_user_name(name: str) -> None:
    """Raise :class:`UserError` unless ``name`` follows :data:`.users.USER_NAME_RULE`."""
    problem = user_name_problem(name)
    if problem is not None:
        raise UserError(f"user name {shown_name(name)}: {problem} ({USER_NAME_RULE})")


def look_alikes_of(document: dict[str, Any], name: str) -> list[str]:
    """The other users of ``document`` whose names are easily taken for ``name``."""
    skeleton = name_skeleton(name)
    return [other for other in document if other != name and name_skeleton(other) == skeleton]


def add_user(
    document: dict[str, Any],
    name: str,
    pass_hash: str,
    grants: dict[str, list[str]],
    groups: Sequence[str] = (),
    catalog: bool = False,
    refresh_tokens: bool = True,
) -> dict[str, Any]:
    """``document`` with a new user ``name``, after the existing ones."""
    check_user_name(name)
    if name in document:
        raise UserError(
            f"user {shown_name(name)} already exists (use `users passwd` to change the password)"
        )
    entry: dict[str, Any] = {"pass_hash": pass_hash}
    if groups:
        entry["groups"] = list(dict.fromkeys(groups))
    entry["repositories"] = grants
    if catalog:
        entry["catalog"] = True
    if not refresh_tokens:
        entry["refresh_tokens"] = False
    return {**document, name: entry}


def _existing(document: dict[str, Any], name: str) -> dict[str, Any]:
    entry = document.get(name)
    if not isinstance(entry, dict):
        raise UserError(f"no user {shown_name(name)}")
    return entry


def set_password(document: dict[str, Any], name: str, pass_hash: str) -> dict[str, Any]:
    """``document`` with user ``name``'s hash replaced; everything else as it was."""
    entry = {**_existing(document, name), "pass_hash": pass_hash}
    return {**document, name: entry}


def remove_user(document: dict[str, Any], name: str) -> dict[str, Any]:
    """``document`` without user ``name``."""
    _existing(document, name)
    return {key: value for key, value in document.items() if key != name}


@dataclass(frozen=True)
class UserChange:
    """What ``users set`` changes in one user's entry; None and empty leave a thing as it is.

    ``grants`` replace the actions of their keys (``KEY=`` denies), ``revoke`` removes keys,
    ``join`` and ``leave`` add and remove groups.
    """

    grants: dict[str, list[str]]
    revoke: Sequence[str] = ()
    join: Sequence[str] = ()
    leave: Sequence[str] = ()
    catalog: bool | None = None
    refresh_tokens: bool | None = None

    def is_empty(self) -> bool:
        """Whether it changes nothing at all."""
        return not (self.grants or self.revoke or self.join or self.leave) and (
            self.catalog is None and self.refresh_tokens is None
        )


def change_user(document: dict[str, Any], name: str, change: UserChange) -> dict[str, Any]:
    """``document`` with user ``name``'s grants, groups and flags changed; the hash and the
    other users as they were. Revoking a key the user has no grant for, or leaving a group the
    user is not in, is an error: it is most likely a typo."""
    entry = dict(_existing(document, name))
    both = set(change.grants) & set(change.revoke)
    if both:
        raise UserError(f"{sorted(both)[0]!r} is both granted and revoked")
    repositories = dict(entry.get("repositories", {}))
    for key in change.revoke:
        if key not in repositories:
            raise UserError(f"user {shown_name(name)} has no grant for {key!r}")
        del repositories[key]
    repositories.update(change.grants)
    entry["repositories"] = repositories
    groups = list(entry.get("groups", []))
    for group in change.leave:
        if group not in groups:
            raise UserError(f"user {shown_name(name)} is not in group {shown_name(group)}")
        groups.remove(group)
    groups += [group for group in dict.fromkeys(change.join) if group not in groups]
    if groups:
        entry["groups"] = groups
    else:
        entry.pop("groups", None)
    # A flag at its default is written only if the file names it already.
    for key, value, default in (
        ("catalog", change.catalog, False),
        ("refresh_tokens", change.refresh_tokens, True),
    ):
        if value is not None and (key in entry or value != default):
            entry[key] = value
    return {**document, name: entry}


def describe_user(document: dict[str, Any], name: str) -> dict[str, Any]:
    """User ``name``'s groups, grants and flags, as ``users show`` and ``users list`` print them:
    never the hash."""
    entry = _existing(document, name)
    return {
        "name": name,
        "groups": list(entry.get("groups", [])),
        "repositories": dict(entry.get("repositories", {})),
        "catalog": entry.get("catalog", False),
        "refresh_tokens": entry.get("refresh_tokens", True),
    }


def list_users(document: dict[str, Any]) -> list[dict[str, Any]]:
    """:func:`describe_user` of each user, in file order."""
    return [describe_user(document, name) for name in document]


def read_users(path: Path) -> dict[str, Any]:
    """The decoded ``users.json`` (empty if there is none), checked as the service checks it."""
    document = read_json(path) if path.exists() else {}
    check_users(path, document)
    return document


def check_users(path: Path, document: Any) -> None:
    """Raise :class:`ConfigError` unless the service would load ``document`` as ``path``."""
    groups = load_groups(path.with_name(GROUPS_FILE))
    parse_users(path, document, VALIDATION_ONLY_COST, groups)


def render_users(document: dict[str, Any], like: str | None = None) -> bytes:
    """``document`` as JSON in the layout of ``like`` (the file's current text).

    Keeps its indentation, whether action lists stand on one line (as in the example file) or
    one action per line (as ``json.dumps`` writes them), and whether non-ASCII is escaped.
    """
    indent = DEFAULT_INDENT
    inline_lists, ascii_only = True, False
    if like:
        found = re.search(r'^([ \t]+)"', like, re.MULTILINE)
        indent = found.group(1) if found else indent
        inline_lists = re.search(r"\[[ \t]*\r?\n", like) is None
        ascii_only = re.search(r"\\u[0-9a-fA-F]{4}", like) is not None
    if inline_lists:
        text = _dump(document, indent, 0, ascii_only)
    else:
        text = json.dumps(document, indent=indent, ensure_ascii=ascii_only)
    return (text + "\n").encode("utf-8")


def _dump(value: Any, indent: str, level: int, ascii_only: bool) -> str:
    if isinstance(value, dict) and value:
        inner = indent * (level + 1)
        items = [
            f"{inner}{json.dumps(key, ensure_ascii=ascii_only)}: "
            + _dump(item, indent, level + 1, ascii_only)
            for key, item in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + indent * level + "}"
    return json.dumps(value, ensure_ascii=ascii_only)  # lists stay on one line


def update_with_new_hash(
    path: Path,
    edit: Callable[[dict[str, Any], str], dict[str, Any]],
    new_hash: Callable[[], str],
) -> None:
    """Apply ``edit(document, hash)`` with a hash from ``new_hash()`` (which asks for the
    password), but check the edit against the file first, so nobody types a password in vain."""
    current = read_users(path)
    check_users(path, edit(current, PLACEHOLDER_HASH))
    pass_hash = new_hash()
    update_users(path, lambda document: edit(document, pass_hash))


def update_users(path: Path, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Apply ``change`` to ``users.json`` under its lock, check the result, write it atomically.

    A new file is created with mode 0600; an existing one keeps its mode, owner and layout.
    """

    def rewrite(data: bytes | None) -> bytes:
        document = {} if data is None else decode_json(path, data)
        check_users(path, document)
        updated = change(document)
        check_users(path, updated)
        return render_users(updated, None if data is None else data.decode("utf-8"))

    locked_update(path, rewrite, NEW_FILE_MODE)
