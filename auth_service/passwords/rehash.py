"""Rehash on login: a hash at another cost than ``BCRYPT_COST`` is replaced, after a successful
login, by a hash of the same password at that cost, so a ``users.json`` of mixed costs converges.

The password is at hand only then, so this is the only moment it can be done. The write is a
compare-and-swap under the file's lock (:func:`auth_service.files.atomic.locked_update`): the
user's hash is replaced only if the file still holds the one the login was checked against, so
a ``users passwd`` (or a hand edit) that came in between is never overwritten. Everything else
in the file stays as it was, byte for byte (the hash's text is replaced where it stands).

It never fails a login: a configuration directory the service can't write (a Kubernetes
ConfigMap or Secret, a read-only mount) is logged once per process, and the hashes keep their
costs until changed by hand. Such a directory is noticed before the new hash is made, so that
it costs no bcrypt hash per login either.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import bcrypt

from auth_service.files.atomic import locked_update
from auth_service.files.users_edit import render_users

log = logging.getLogger(__name__)

_unwritable_warned = threading.Event()


class _Unchanged(Exception):
    """The file no longer holds the hash that was checked: leave it as it is."""


def _rewritten(text: str, username: str, old_hash: str, new_hash: str) -> bytes:
    """``text`` with ``username``'s hash ``old_hash`` replaced by ``new_hash``."""
    document: Any = json.loads(text)
    entry = document.get(username) if isinstance(document, dict) else None
    if not isinstance(entry, dict) or entry.get("pass_hash") != old_hash:
        raise _Unchanged
    expected = {**document, username: {**entry, "pass_hash": new_hash}}
    # A bcrypt hash needs no escaping in JSON and carries a random salt, so its quoted text
    # occurs once, where the user's pass_hash stands; the result is checked all the same.
    quoted = json.dumps(old_hash)
    if text.count(quoted) == 1:
        in_place = text.replace(quoted, json.dumps(new_hash))
        if json.loads(in_place) == expected:
            return in_place.encode("utf-8")
    # Written some other way (an escaped '/', a hash two users share): rewrite the document in
    # the file's layout, as `auth-service users passwd` does.
    return render_users(expected, text)


def _warn_unwritable(users_path: Path, cost: int, why: str) -> None:
    if not _unwritable_warned.is_set():
        _unwritable_warned.set()
        log.warning(
            "%s: can't rehash passwords to bcrypt cost %d (%s): hashes at other costs stay "
            "until they are changed by hand (auth-service users passwd); logged once",
            users_path,
            cost,
            why,
        )


def update_hash(
    users_path: Path, username: str, old_hash: bytes | str, password: str, cost: int
) -> bytes | None:
    """Replace ``username``'s hash in ``users_path`` by a hash of ``password`` at ``cost`` if
    the file still holds ``old_hash`` for that user; the new hash if it was written, else None.

    Costs one bcrypt hash at ``cost`` (made before the file is locked). Never raises: a file or
    directory that can't be written is logged once per process, anything else once per call.
    """
    old = old_hash.decode("ascii") if isinstance(old_hash, bytes) else old_hash
    if not os.access(Path(users_path).parent, os.W_OK):  # a read-only mount says so at once
        _warn_unwritable(Path(users_path), cost, "its directory is not writable")
        return None
    try:
        secret = password.encode("utf-8", "surrogatepass")
        new_hash = bcrypt.hashpw(secret, bcrypt.gensalt(cost)).decode("ascii")

        def swap(current: bytes | None) -> bytes:
            if current is None:
                raise _Unchanged
            return _rewritten(current.decode("utf-8"), username, old, new_hash)

        locked_update(Path(users_path), swap)
    except _Unchanged:
        return None
    except OSError as exc:
        _warn_unwritable(Path(users_path), cost, exc.strerror or type(exc).__name__)
        return None
    except Exception as exc:  # a login must not fail for a rehash it didn't ask for
        log.warning("%s: rehash of a user's password failed: %s", users_path, type(exc).__name__)
        return None
    log.info("%s: user %r rehashed to bcrypt cost %d", users_path, username, cost)
    return new_hash.encode("ascii")
