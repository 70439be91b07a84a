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
import time
from collections.abc import Callable
from typing import NamedTuple

from auth_service.files.users import User
from auth_service.forked import PerProcess
from auth_service.recently_used import RecentlyUsed


class _Entry(NamedTuple):
    username: str
    pass_hash: bytes
    expires_at: float


def _process_key() -> bytes:
    """This process's HMAC key: uWSGI forks its workers after loading the app, and each makes
    its own, so that no two processes share a key."""
    return os.urandom(32)


class CredentialCache:
    """Bounded, least-recently-used, per process; thread-safe. A ``ttl_seconds`` of 0 turns it
    off (its fingerprints still name a login for :class:`.bcrypt_turns.BcryptGate`)."""

    def __init__(
        self, ttl_seconds: float, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._key = PerProcess(_process_key)
        self._entries: RecentlyUsed[_Entry] = RecentlyUsed(max_entries)

    def __len__(self) -> int:
        return len(self._entries)

    def fingerprint(self, username: str, password: str) -> bytes:
        """The key of one user and password: an HMAC under this process's random key."""
        name = username.encode("utf-8", "surrogatepass")
        # The name's length first, so ("ab", "c") and ("a", "bc") can never collide.
        message = len(name).to_bytes(4, "big") + name + password.encode("utf-8", "surrogatepass")
        return hmac.digest(self._key.get(), message, "sha256")  # one call into OpenSSL

    def accepts(self, fingerprint: bytes, user: User | None) -> bool:
        """Whether this user's password was verified recently, against the hash they have now
        (an entry for a changed, removed or expired one is gone for good)."""
        if user is None:
            return False
        entry = self._entries.find(
            fingerprint,
            lambda e: (
                e.username == user.name
                and e.pass_hash == user.pass_hash
                and e.expires_at > self._clock()
            ),
        )
        return entry is not None

    def remember(self, fingerprint: bytes, user: User) -> None:
        """Record a successful bcrypt check of ``user``; the oldest entry goes when full."""
        if self.ttl <= 0:
            return
        self._entries.keep(fingerprint, _Entry(user.name, user.pass_hash, self._clock() + self.ttl))
