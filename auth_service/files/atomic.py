"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Read-modify-write of a shared file (``users.json``, ``revocations.json``) goes through
:func:`locked_update`, which serialises writers with an ``flock`` on a lock file beside it.

A new file is private (0600) unless the caller says otherwise: most of what is written here
holds password hashes, revocations or a key. A file that is replaced keeps its mode, owner and
group, so an operator's choice (say 0640 for a group that must read it) survives every edit,
but a private file loses any access for all users.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PRIVATE_MODE = 0o600


def write_atomic(
    path: Path, data: bytes, mode: int = PRIVATE_MODE, owner: tuple[int, int] | None = None
) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory, fsync, rename.

    A new file gets ``mode`` (0600 unless given) and ``owner`` (uid, gid) where permitted. A file
    that exists keeps its own mode, owner and group instead, so that root editing a service's
    file leaves it readable by the service, and a group that reads it still does; but it never
    keeps more access for other users than ``mode`` gives them: a world-readable key or
    ``users.json`` is closed by its next write.
    """
    path = Path(path)
    try:
        existing = os.stat(path)
        others = 0o007 & ~mode  # what others may not have
        mode = stat.S_IMODE(existing.st_mode) & ~others
        owner = (existing.st_uid, existing.st_gid)
    except FileNotFoundError:
        pass
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            # mkstemp made it 0600; the owner first, as a change of owner may clear mode bits.
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                _give(handle.fileno(), *owner)
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


def _give(fd: int, uid: int, gid: int) -> None:
    """Give the open file to ``uid``:``gid``, or at least to the group, as far as permitted."""
    try:
        os.fchown(fd, uid, gid)
    except PermissionError:
        # Not root: the file stays ours, but a member of the file's group may still give it
        # that group (the one that must read it).
        with contextlib.suppress(PermissionError):
            os.fchown(fd, -1, gid)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise writers of ``path`` across processes with a lock file beside it."""
    path = Path(path)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def locked_update(
    path: Path, change: Callable[[bytes | None], bytes], mode: int = PRIVATE_MODE
) -> None:
    """Replace ``path`` with ``change(its content)`` (None if missing), under :func:`locked`.

    The write is atomic and keeps the file's mode, owner and group; a new file gets ``mode``
    (0600 unless given). If ``change`` raises, nothing is written.
    """
    path = Path(path)
    with locked(path):
        try:
            current: bytes | None = path.read_bytes()
        except FileNotFoundError:
            current = None
        write_atomic(path, change(current), mode)
