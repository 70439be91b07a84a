"""``users.json``, ``groups.json`` and ``repositories.json``, kept current while the service runs.

The files are parsed when they change, never per request: at most once a second a request
``stat``s them, and only a changed size, mtime or inode (or a file appearing or going away)
triggers a reload. A reload validates all files and swaps them in together; a broken edit is
logged once and the last good set keeps serving, so a typo never locks everybody out.
``groups.json`` is optional: without it there are no groups.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .groups import GROUPS_FILE, load_groups
from .repositories import AnonymousAccess, load_repositories
from .users import UserDirectory, load_users

log = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 1.0

FileStamp = tuple[int, int, int] | None  # (inode, size, mtime_ns), None when missing


@dataclass(frozen=True)
class AccessFiles:
    """One consistent version of the user directory and the anonymous rule."""

    users: UserDirectory
    anonymous: AnonymousAccess


def _stamp(path: Path) -> FileStamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


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
    ) -> None:
        groups_path = users_path.with_name(GROUPS_FILE) if groups_path is None else groups_path
        self._paths = (users_path, repositories_path, groups_path)
        self._bcrypt_cost = bcrypt_cost
        self._clock = clock
        self._lock = threading.Lock()
        self._stamps = self._read_stamps()
        self._current = self._load()  # at start-up a ConfigError propagates: refuse to start
        self._next_check = clock() + RELOAD_CHECK_SECONDS
        self._failed_stamps: tuple[FileStamp, ...] | None = None
        self.last_reload_ok = True

    def _read_stamps(self) -> tuple[FileStamp, ...]:
        return tuple(_stamp(path) for path in self._paths)

    def _load(self) -> AccessFiles:
        users_path, repositories_path, groups_path = self._paths
        groups = load_groups(groups_path)  # first: users name groups, so need them to parse
        return AccessFiles(
            load_users(users_path, self._bcrypt_cost, groups), load_repositories(repositories_path)
        )

    def current(self) -> AccessFiles:
        """The access files in force, reloaded first if they changed on disk."""
        if self._clock() >= self._next_check and self._lock.acquire(blocking=False):
            try:
                self._next_check = self._clock() + RELOAD_CHECK_SECONDS
                self._reload_if_changed()
            finally:
                self._lock.release()
        return self._current

    def _reload_if_changed(self) -> None:
        stamps = self._read_stamps()
        if stamps == self._stamps or stamps == self._failed_stamps:
            return
        try:
            loaded = self._load()
        except ConfigError as exc:
            self._failed_stamps = stamps
            self.last_reload_ok = False
            log.error("configuration reload failed, still serving the last good one: %s", exc)
            return
        self._current, self._stamps, self._failed_stamps = loaded, stamps, None
        self.last_reload_ok = True
        log.info("configuration reloaded: %d users", len(loaded.users))
