"""State that belongs to one process: made again in every process forked from the one that had it.

uWSGI loads the app in its master and then forks the workers, and it respawns a dead worker from
that same start-up copy. A forked child inherits the parent's memory but not its threads, and it
must not share some of what it inherits: a secret key, the places its parent's threads hold, a
queue of its parent's requests. Such state is a :class:`PerProcess` value, made on first use in
each process. (Python's ``os.register_at_fork`` hooks are no substitute: uWSGI forks without
running them unless told to.)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """``get()`` is the value ``make()`` returned in this process, made on the first call here."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._made: tuple[int, T] | None = None  # (the process it was made in, the value)
        # One lock per process, made in that process: a lock that a thread of the parent held
        # at the fork stays held in the child, whose copy of that thread never releases it.
        self._locks: dict[int, threading.Lock] = {}

    def get(self) -> T:
        """This process's value; the first call in a process makes it (once, whatever the
        number of threads asking)."""
        made, pid = self._made, os.getpid()
        if made is not None and made[0] == pid:
            return made[1]
        with self._locks.setdefault(pid, threading.Lock()):  # setdefault is atomic
            made = self._made
            if made is None or made[0] != pid:
                made = self._made = (pid, self._make())
        return made[1]
