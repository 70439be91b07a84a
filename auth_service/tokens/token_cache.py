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

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import NamedTuple

from auth_service.forked import PerProcess
from auth_service.tokens.signer import IssuedToken


class _Entry(NamedTuple):
    issued: IssuedToken
    pass_hash: bytes
    reuse_until: float


class _Memory:
    def __init__(self) -> None:
        self.entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self.lock = threading.Lock()


class TokenCache:
    """Signed tokens by (subject, audience, access); ``max_entries`` of 0 turns it off."""

    def __init__(self, max_entries: int = 10000, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._memory = PerProcess(_Memory)

    def __len__(self) -> int:
        return len(self._memory.get().entries)

    def get(self, key: Hashable, pass_hash: bytes) -> IssuedToken | None:
        """The token kept for ``key``, if it was signed for this password hash and more than
        half of its life remains."""
        memory = self._memory.get()
        if not memory.entries:
            return None
        with memory.lock:
            entry = memory.entries.get(key)
            if entry is None:
                return None
            if entry.pass_hash != pass_hash or entry.reuse_until <= self._clock():
                del memory.entries[key]
                return None
            memory.entries.move_to_end(key)
            return entry.issued

    def put(self, key: Hashable, pass_hash: bytes, issued: IssuedToken) -> None:
        """Keep ``issued`` for ``key``; the least recently used entry goes when full."""
        if self.max_entries <= 0:
            return
        entry = _Entry(issued, pass_hash, issued.issued_at + issued.expires_in / 2)
        memory = self._memory.get()
        with memory.lock:
            memory.entries[key] = entry
            memory.entries.move_to_end(key)
            while len(memory.entries) > self.max_entries:
                memory.entries.popitem(last=False)
