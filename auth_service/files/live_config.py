"""``users.json``, ``groups.json`` and ``repositories.json``, kept current while the service runs.

The files are parsed when they change, never per request: at most once a second a request
``stat``s them, and only a changed size, mtime or inode (or a file appearing or going away)
triggers a reload. A reload validates all files and swaps them in together; a broken edit is
logged once and the last good set keeps serving, so a typo never locks everybody out.
``groups.json`` is optional: without it there are no groups.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from auth_service.files.anonymous import AnonymousAccess, load_repositories
from auth_service.files.groups import GROUPS_FILE, load_groups
from auth_service.files.users import UserDirectory, load_users
from auth_service.files.watched import WatchedFiles

RELOAD_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class AccessFiles:
    """One consistent version of the user directory and the anonymous rule."""

    users: UserDirectory
    anonymous: AnonymousAccess


class LiveConfig:
    """Holds the current :class:`AccessFiles` and reloads them when the files change.

    ``groups_path`` defaults to ``groups.json`` beside ``users.json``.
    """

    def __init__(
        self,
        users_path: Path,
        repositories_path: Path,
        bcrypt_cost: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        groups_path: Path | None = None,
        name_key: bytes | None = None,
    ) -> None:
        groups_path = users_path.with_name(GROUPS_FILE) if groups_path is None else groups_path
        self._paths = (users_path, repositories_path, groups_path)
        self._bcrypt_cost = bcrypt_cost
        self._name_key = name_key  # see UserDirectory: which cost an unknown name is checked at
        # At start-up a ConfigError propagates from here: refuse to start.
        self._watched = WatchedFiles(self._paths, self._load, RELOAD_CHECK_SECONDS, clock)

    def _load(self) -> AccessFiles:
        users_path, repositories_path, groups_path = self._paths
        groups = load_groups(groups_path)  # first: users name groups, so need them to parse
        users = load_users(users_path, self._bcrypt_cost, groups, self._name_key)
        users.make_dummy_hashes()  # while loading, not in the first login's bcrypt turn
        return AccessFiles(users, load_repositories(repositories_path))

    def current(self) -> AccessFiles:
        """The access files in force, reloaded first if they changed on disk."""
        return self._watched.current()

    def check_at_next_call(self) -> None:
        """Make the next :meth:`current` look at the files, however recently it last did."""
        self._watched.check_at_next_call()

    @property
    def last_reload_ok(self) -> bool:
        """Whether the last reload (if any) succeeded; a failed one keeps the old files."""
        return self._watched.last_reload_ok
