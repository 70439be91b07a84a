"""A value loaded from files and reloaded when they change on disk (noticed by ``stat``).

At most once per interval a caller ``stat``s the files; only a changed inode, size or mtime makes
it parse them. A load that fails keeps the last good value and is logged once per broken version.

Two rules keep every answer as fresh as what the process has seen:

- A process forked from the one that loaded the files (uWSGI loads the app in its master, then
  forks, and respawns a killed worker from that same start-up copy) looks at the files before
  its first answer: otherwise a respawned worker would serve the configuration of start-up, a
  changed password's old value included.
- While one thread reloads, the others wait for it instead of serving the copy it is replacing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from auth_service.errors import ConfigError
from auth_service.forked import PerProcess
from auth_service.records import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")
FileStamp = tuple[int, int, int] | None  # (inode, size, mtime_ns), None when missing


def file_stamp(path: Path) -> FileStamp:
    """What tells a new version of ``path`` from the last one: inode, size and mtime."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class _Schedule:
    """When this process looks at the files next, and the lock its threads take to look. A
    process forked from the one that loaded the files looks at once."""

    def __init__(self) -> None:
        self.next_check = 0.0
        self.lock = threading.Lock()


class WatchedFiles(Generic[T]):
    """``current()`` is ``load()``'s latest good result for ``paths``."""

    def __init__(
        self,
        paths: Sequence[Path],
        load: Callable[[], T],
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._paths = tuple(paths)
        self._load = load
        self._interval = interval
        self._clock = clock
        self._stamps = self._read_stamps()
        self._current = load()  # at start-up a ConfigError propagates: refuse to start
        self._failed_stamps: tuple[FileStamp, ...] | None = None
        self._schedule = PerProcess(_Schedule)
        self._schedule.get().next_check = clock() + interval  # this process has just loaded
        self.last_reload_ok = True

    def _read_stamps(self) -> tuple[FileStamp, ...]:
        return tuple(file_stamp(path) for path in self._paths)

    def current(self) -> T:
        """The value in force, reloaded first if the files changed."""
        schedule = self._schedule.get()
        if self._clock() >= schedule.next_check:
            with schedule.lock:  # a thread that finds a reload under way waits for its result
                if self._clock() >= schedule.next_check:  # not done by the thread we waited for
                    self._reload_if_changed()
                    schedule.next_check = self._clock() + self._interval
        return self._current

    def check_at_next_call(self) -> None:
        """Make the next :meth:`current` look at the files, however recently it last did."""
        self._schedule.get().next_check = 0.0

    def _reload_if_changed(self) -> None:
        stamps = self._read_stamps()  # before loading: a change during the load is seen next time
        if stamps == self._stamps or stamps == self._failed_stamps:
            return
        try:
            loaded = self._load()
        except ConfigError as exc:
            self._failed_stamps = stamps
            self.last_reload_ok = False
            metrics.count_config_reload(ok=False)
            log.error("configuration reload failed, still serving the last good one: %s", exc)
            return
        self._current, self._stamps, self._failed_stamps = loaded, stamps, None
        self.last_reload_ok = True
        metrics.count_config_reload(ok=True)
        log.info("configuration reloaded: %s", ", ".join(str(p) for p in self._paths))
