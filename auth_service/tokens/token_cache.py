"""Proxy mode's signed tokens, reused: one token per user, audience and access, for a while.

In proxy mode nginx asks for a token on every registry request, and a pull of an image of many
layers makes one request per blob, all with the same access (``repository:<name>:pull``). A token
signed for a user, audience and access is handed out again while more than half of its life
remains (the registry accepts a token any number of times until it expires), so a pull signs
one token, not one per blob.

The access decision is taken on every request all the same: only the signing is saved, so a
grant removed from users.json ends at once. An entry also remembers the password hash of the user
it was signed for and counts only while the user still has it, so a password change (or a
removed and re-created user) ends it at once too. Per process, bounded, least recently used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import NamedTuple

from auth_service.recently_used import RecentlyUsed
from auth_service.tokens.signer import IssuedToken


class _Entry(NamedTuple):
    issued: IssuedToken
    pass_hash: bytes
    reuse_until: float


class TokenCache:
    """Signed tokens by (subject, audience, access); ``max_entries`` of 0 turns it off."""

    def __init__(self, max_entries: int = 10000, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._entries: RecentlyUsed[_Entry] = RecentlyUsed(max_entries)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, pass_hash: bytes) -> IssuedToken | None:
        """The token kept for ``key``, if it was signed for this password hash and more than
        half of its life remains."""
        entry = self._entries.find(
            key, lambda e: e.pass_hash == pass_hash and e.reuse_until > self._clock()
        )
        return None if entry is None else entry.issued

    def put(self, key: Hashable, pass_hash: bytes, issued: IssuedToken) -> None:
        """Keep ``issued`` for ``key``; the least recently used entry goes when full."""
        if self.max_entries <= 0:
            return
        self._entries.keep(key, _Entry(issued, pass_hash, issued.issued_at + issued.expires_in / 2))
