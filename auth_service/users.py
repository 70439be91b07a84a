"""``users.json``: the user directory, and password verification that doesn't leak who exists.

Format, unchanged from the original service::

    {"alice": {"pass_hash": "$2b$12$...", "repositories": {"team/app": ["pull", "push"],
                                                          "*": ["pull"]},
               "catalog": false}}
"""

from __future__ import annotations

import functools
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from .actions import ALL, GRANTABLE
from .errors import ConfigError
from .jsonfile import read_json
from .scopes import is_valid_name

# bcrypt's modular-crypt format; $2y$ is what Apache's `htpasswd -B` writes.
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
BCRYPT_MAX_PASSWORD_BYTES = 72
DEFAULT_BCRYPT_COST = 12
_USER_KEYS = {"pass_hash", "repositories", "catalog"}


@dataclass(frozen=True)
class User:
    """One account: its hash, its grants per repository key, and whether it may list the catalog."""

    name: str
    pass_hash: bytes = field(repr=False)
    repositories: Mapping[str, frozenset[str]]
    catalog: bool = False


@functools.cache
def _dummy_hash(cost: int) -> bytes:
    """A hash of a random secret, checked for unknown users so they cost as much as known ones."""
    return bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(cost))


def bcrypt_cost(pass_hash: bytes) -> int:
    """The cost factor written in a bcrypt hash."""
    return int(pass_hash[4:6])


class UserDirectory:
    """The users of one version of ``users.json``, and the password check against them."""

    def __init__(self, users: Mapping[str, User], dummy_cost: int | None = None) -> None:
        self.users = dict(users)
        if dummy_cost is None:
            costs = Counter(bcrypt_cost(user.pass_hash) for user in self.users.values())
            dummy_cost = costs.most_common(1)[0][0] if costs else DEFAULT_BCRYPT_COST
        self._dummy_hash = _dummy_hash(dummy_cost)

    def __len__(self) -> int:
        return len(self.users)

    def get(self, name: str) -> User | None:
        return self.users.get(name)

    def verify_password(self, username: str, password: str) -> User | None:
        """The user if the password is theirs, else None, in the same time either way.

        Unknown users and over-long passwords still run one bcrypt check (against a dummy hash)
        so the answer time doesn't tell which users exist.
        """
        user = self.users.get(username)
        secret = password.encode("utf-8")
        usable = len(secret) <= BCRYPT_MAX_PASSWORD_BYTES and b"\0" not in secret
        expected = user.pass_hash if user is not None and usable else self._dummy_hash
        matched = bcrypt.checkpw(secret if usable else b"", expected)
        return user if matched and user is not None and usable else None


def _fail(path: Path, where: str, problem: str) -> ConfigError:
    return ConfigError(str(path), where, problem)


def _parse_user(path: Path, name: Any, entry: Any) -> User:
    where = f"user {name!r}"
    if not isinstance(name, str) or not name or ":" in name or name != name.strip():
        raise _fail(path, where, "user names must be non-empty, without ':' or edge spaces")
    if not isinstance(entry, dict):
        raise _fail(path, where, "must be an object with pass_hash and repositories")
    unknown = set(entry) - _USER_KEYS
    if unknown:
        raise _fail(
            path,
            where,
            f"unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(_USER_KEYS))})",
        )
    pass_hash = entry.get("pass_hash")
    if not isinstance(pass_hash, str) or not _BCRYPT_HASH.fullmatch(pass_hash):
        raise _fail(path, f"{where}: pass_hash", "is not a bcrypt hash ($2a$, $2b$ or $2y$)")
    if not 4 <= bcrypt_cost(pass_hash.encode()) <= 31:
        raise _fail(path, f"{where}: pass_hash", "has a bcrypt cost outside 4..31")
    repositories = entry.get("repositories", {})
    if not isinstance(repositories, dict):
        raise _fail(path, f"{where}: repositories", "must be an object of name: [actions]")
    grants = {}
    for repo, actions in repositories.items():
        key = f"{where}: repositories: {repo!r}"
        if repo != ALL and not is_valid_name(repo):
            raise _fail(path, key, "is not a repository name or '*'")
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            raise _fail(path, key, "must be a list of actions")
        unknown_actions = [a for a in actions if a not in GRANTABLE]
        if unknown_actions:
            raise _fail(
                path, key, f"unknown action {unknown_actions[0]!r} (allowed: pull, push, delete, *)"
            )
        grants[repo] = frozenset(actions)
    catalog = entry.get("catalog", False)
    if not isinstance(catalog, bool):
        raise _fail(path, f"{where}: catalog", "must be true or false")
    return User(name, pass_hash.encode("ascii"), grants, catalog)


def parse_users(path: Path, document: Any, dummy_cost: int | None = None) -> UserDirectory:
    """Validate a decoded ``users.json``; raise :class:`ConfigError` naming the user and key."""
    if not isinstance(document, dict):
        raise ConfigError(str(path), None, "must be a JSON object of user name: settings")
    users = {name: _parse_user(path, name, entry) for name, entry in document.items()}
    return UserDirectory(users, dummy_cost)


def load_users(path: Path, dummy_cost: int | None = None) -> UserDirectory:
    """Read and validate ``users.json``."""
    return parse_users(path, read_json(path), dummy_cost)
