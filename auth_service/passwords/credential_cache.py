"""The verified-credential cache: a login bcrypt accepted is accepted again, for a while, for free.

bcrypt is the whole cost of an authenticated token, and clients ask for one per repository, per
scope change and per CLI invocation. After one successful check the same user and password are
accepted without bcrypt for ``CREDENTIAL_CACHE_SECONDS``.

What memory holds is an HMAC-SHA256 of user and password under a random key made in this
process, so neither the password nor a fast hash of it (which could be brute-forced offline) is
ever kept. An entry remembers the password hash it was checked against and only counts while the
user still has that hash: a password change or a removed user ends it at once. Failures are never
stored, so nothing but a successful bcrypt check creates an entry.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from auth_service.files.users import User
from auth_service.forked import PerProcess


class _Entry(NamedTuple):
    username: str
    pass_hash: bytes
    expires_at: float


class _ProcessMemory:
    """One process's key and entries: uWSGI forks its workers after loading the app, and each
    makes its own key and starts empty, so that no two processes share a key."""

    def __init__(self) -> None:
        self.key = os.urandom(32)
        self.entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self.lock = threading.Lock()


class CredentialCache:
    """Bounded, least-recently-used, per process; thread-safe. A ``ttl_seconds`` of 0 turns it
    off (its fingerprints still name a login for :class:`.bcrypt_turns.BcryptGate`)."""

    def __init__(
        self, ttl_seconds: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._memory = PerProcess(_ProcessMemory)

    def __len__(self) -> int:
        return len(self._memory.get().entries)

    def fingerprint(self, username: str, password: str) -> bytes:
        """The key of one user and password: an HMAC under this process's random key."""
        name = username.encode("utf-8", "surrogatepass")
        # The name's length first, so ("ab", "c") and ("a", "bc") can never collide.
        message = len(name).to_bytes(4, "big") + name + password.encode("utf-8", "surrogatepass")
        return hmac.digest(self._memory.get().key, message, "sha256")  # one call into OpenSSL

    def accepts(self, fingerprint: bytes, user: User | None) -> bool:
        """Whether this user's password was verified recently, against the hash they have now."""
        memory = self._memory.get()
        if user is None or not memory.entries:
            return False
        with memory.lock:
            entry = memory.entries.get(fingerprint)
            if entry is None:
                return False
            if (
                entry.username != user.name
                or entry.pass_hash != user.pass_hash
                or entry.expires_at <= self._clock()
            ):
                del memory.entries[fingerprint]  # changed, removed or expired: gone for good
                return False
            memory.entries.move_to_end(fingerprint)
            return True

    def remember(self, fingerprint: bytes, user: User) -> None:
        """Record a successful bcrypt check of ``user``; the oldest entry goes when full."""
        if self.ttl <= 0:
            return
        entry = _Entry(user.name, user.pass_hash, self._clock() + self.ttl)
        memory = self._memory.get()
        with memory.lock:
            memory.entries[fingerprint] = entry
            memory.entries.move_to_end(fingerprint)
            while len(memory.entries) > self.max_entries:
                memory.entries.popitem(last=False)
