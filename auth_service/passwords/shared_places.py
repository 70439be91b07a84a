"""A fixed number of places shared by a process and every worker forked from it.

uWSGI loads the app in its master and then forks the workers, so a file opened here before the
fork is open in all of them. A place is one byte of that (unlinked) file, and a process holds a
place by holding a POSIX record lock on its byte. The kernel keeps the count across processes
and, what a counter in shared memory could not do, frees every place of a worker that dies: a
worker killed mid-check (harakiri, OOM) can't leave the service with fewer places for good.

(With uWSGI's ``lazy-apps`` each worker loads the app, and so makes places, of its own: the
bound is then per worker.)

POSIX record locks belong to a process, not to a thread: a process never conflicts with its own
locks. So each process also remembers which places its own threads hold.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import threading


class SharedPlaces:
    """``count`` places; :meth:`try_take` one, :meth:`give_back` it."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 (open for the places' lifetime)
        self._lock = threading.Lock()
        self._held: set[int] = set()
        self._pid = os.getpid()

    def try_take(self) -> int | None:
        """A free place, now held by this process; ``None`` when every place is held."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child inherits no locks
                self._held.clear()
                self._pid = os.getpid()
            for place in range(self.count):
                if place not in self._held and self._lock_byte(place):
                    self._held.add(place)
                    return place
        return None

    def give_back(self, place: int) -> None:
        with self._lock:
            fcntl.lockf(self._file, fcntl.LOCK_UN, 1, place)
            self._held.discard(place)

    def _lock_byte(self, place: int) -> bool:
        try:
            fcntl.lockf(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, place)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):  # another process holds it
                return False
            raise
        return True
