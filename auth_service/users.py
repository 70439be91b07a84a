"""``users.json``: the user directory, and password verification that doesn't leak who exists.

Format of the original service, which still means what it meant::

    {"alice": {"pass_hash": "$2b$12$...", "repositories": {"team/app": ["pull", "push"],
                                                          "*": ["pull"]},
               "catalog": false}}

On top of it, repository keys may be patterns (:mod:`.patterns`), and ``"groups": [...]`` names
groups of ``groups.json`` (:mod:`.groups`) whose rights the user shares.
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

from .errors import ConfigError
from .groups import GROUPS_FILE, Group
from .jsonfile import read_json
from .rules import RuleSet, parse_grants
from .settings import USERS_FILE

# bcrypt's modular-crypt format; $2y$ is what Apache's `htpasswd -B` writes.
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
BCRYPT_MAX_PASSWORD_BYTES = 72
DEFAULT_BCRYPT_COST = 12
# bcrypt's minimum: the dummy-hash cost for callers that only validate a users.json and never
# check a password with it (the command line, `config check`).
VALIDATION_ONLY_COST = 4
_USER_KEYS = {"pass_hash", "repositories", "catalog", "groups"}


@dataclass(frozen=True)
class User:
    """One account: its hash, its grants per repository key, whether it may list the catalog,
    and the groups whose rights it shares."""

    name: str
    pass_hash: bytes = field(repr=False)
    repositories: Mapping[str, frozenset[str]]
    catalog: bool = False
    groups: tuple[Group, ...] = ()
    rules: RuleSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Compiled here, once per loaded file, so that a request only looks keys up.
        object.__setattr__(
            self, "rules", RuleSet.from_grants(self.repositories, USERS_FILE, self.name)
        )


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


def _member_of(
    path: Path, where: str, names: Any, groups: Mapping[str, Group]
) -> tuple[Group, ...]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _fail(path, f"{where}: groups", "must be a list of group names")
    for group in names:
        if group not in groups:
            known = (
                f"{GROUPS_FILE} defines: {', '.join(sorted(groups))}"
                if groups
                else f"there is no {GROUPS_FILE} or it defines none"
            )
            raise _fail(path, f"{where}: groups", f"unknown group {group!r} ({known})")
    return tuple(groups[group] for group in dict.fromkeys(names))


def _parse_user(path: Path, name: Any, entry: Any, groups: Mapping[str, Group]) -> User:
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
    grants = parse_grants(path, where, entry.get("repositories", {}))
    catalog = entry.get("catalog", False)
    if not isinstance(catalog, bool):
        raise _fail(path, f"{where}: catalog", "must be true or false")
    member_of = _member_of(path, where, entry.get("groups", []), groups)
    return User(name, pass_hash.encode("ascii"), grants, catalog, member_of)


def parse_users(
    path: Path,
    document: Any,
    dummy_cost: int | None = None,
    groups: Mapping[str, Group] | None = None,
) -> UserDirectory:
    """Validate a decoded ``users.json``; raise :class:`ConfigError` naming the user and key.

    ``groups`` are those of ``groups.json``, which users may name.
    """
    if not isinstance(document, dict):
        raise ConfigError(str(path), None, "must be a JSON object of user name: settings")
    known = groups or {}
    users = {name: _parse_user(path, name, entry, known) for name, entry in document.items()}
    return UserDirectory(users, dummy_cost)


def load_users(
    path: Path, dummy_cost: int | None = None, groups: Mapping[str, Group] | None = None
) -> UserDirectory:
    """Read and validate ``users.json``, whose users may name ``groups``."""
    return parse_users(path, read_json(path), dummy_cost, groups)
