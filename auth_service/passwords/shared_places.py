"""A fixed number of places shared by a process and every worker forked from it.

uWSGI loads the app in its master and then forks the workers, so a file opened here before the
fork is open in all of them. A place is one byte of that (unlinked) file, and a process holds a
place by holding a POSIX record lock on its byte. The kernel keeps the count across processes
and, what a counter in shared memory could not do, frees every place of a worker that dies: a
worker killed mid-check (harakiri, OOM) can't leave the service with fewer places for good.

(With uWSGI's ``lazy-apps`` each worker loads the app, and so makes places, of its own: the
bound is then per worker.)

POSIX record locks belong to a process, not to a thread: a process never conflicts with its own
locks. So each process also remembers which places its own threads hold; a forked child
inherits none of its parent's record locks, and starts holding nothing.
"""

from __future__ import annotations

import errno
import fcntl
import tempfile
import threading

from auth_service.forked import PerProcess


class _HeldHere:
    """The places this process's threads hold."""

    def __init__(self) -> None:
        self.places: set[int] = set()
        self.lock = threading.Lock()


class SharedPlaces:
    """``count`` places; :meth:`try_take` one, :meth:`give_back` it."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 (open for the places' lifetime)
        self._held = PerProcess(_HeldHere)

    def try_take(self) -> int | None:
        """A free place, now held by this process; ``None`` when every place is held."""
        held = self._held.get()
        with held.lock:
            for place in range(self.count):
                if place not in held.places and self._lock_byte(place):
                    held.places.add(place)
                    return place
        return None

    def give_back(self, place: int) -> None:
        """Free ``place``, which this process holds, for any process to take."""
        held = self._held.get()
        with held.lock:
            fcntl.lockf(self._file, fcntl.LOCK_UN, 1, place)
            held.places.discard(place)

    def _lock_byte(self, place: int) -> bool:
        try:
            fcntl.lockf(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, place)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):  # another process holds it
                return False
            raise
        return True
