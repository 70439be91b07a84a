"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Read-modify-write of a shared file (``users.json``, ``revocations.json``) goes through
:func:`locked_update`, which serialises writers with an ``flock`` on a lock file beside it.
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


def write_atomic(
    path: Path, data: bytes, mode: int = 0o644, owner: tuple[int, int] | None = None
) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory, fsync, rename.

    ``owner`` (uid, gid) is given to the new file where permitted, so that root editing a
    service's file leaves it readable by the service.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            if owner is not None and owner != (os.geteuid(), os.getegid()):
                # Not root: the file stays ours, as any file we write.
                with contextlib.suppress(PermissionError):
                    os.fchown(handle.fileno(), *owner)
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


def locked_update(path: Path, change: Callable[[bytes | None], bytes], mode: int = 0o644) -> None:
    """Replace ``path`` with ``change(its content)`` (None if missing), under :func:`locked`.

    The write is atomic and keeps the file's mode and owner; a new file gets ``mode``. If
    ``change`` raises, nothing is written.
    """
    path = Path(path)
    with locked(path):
        try:
            current: bytes | None = path.read_bytes()
            st = os.stat(path)
            mode, owner = stat.S_IMODE(st.st_mode), (st.st_uid, st.st_gid)
        except FileNotFoundError:
            current, owner = None, None
        write_atomic(path, change(current), mode, owner)
