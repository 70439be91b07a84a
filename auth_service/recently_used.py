"""A bounded memory of recent entries, per process: the credential cache's and the token cache's.

Each process (uWSGI forks its workers from the master) starts with its own, empty. When full, the
entry used least recently goes. An entry found no longer valid (expired, or for a password hash
the user no longer has) is dropped when it is looked up, for good.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from auth_service.forked import PerProcess

V = TypeVar("V")


class _Entries(Generic[V]):
    def __init__(self) -> None:
        self.values: OrderedDict[Hashable, V] = OrderedDict()
        self.lock = threading.Lock()


class RecentlyUsed(Generic[V]):
    """At most ``max_entries`` values by key, in this process; thread-safe."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: PerProcess[_Entries[V]] = PerProcess(_Entries)

    def __len__(self) -> int:
        return len(self._entries.get().values)

    def find(self, key: Hashable, valid: Callable[[V], bool]) -> V | None:
        """The value kept for ``key`` if ``valid(value)``; an invalid one is dropped."""
        entries = self._entries.get()
        if not entries.values:  # the common case of an empty memory takes no lock
            return None
        with entries.lock:
            value = entries.values.get(key)
            if value is None:
                return None
            if not valid(value):
                del entries.values[key]
                return None
            entries.values.move_to_end(key)
            return value

    def keep(self, key: Hashable, value: V) -> None:
        """Keep ``value`` for ``key``; the least recently used entry goes when full."""
        entries = self._entries.get()
        with entries.lock:
            entries.values[key] = value
            entries.values.move_to_end(key)
            while len(entries.values) > self.max_entries:
                entries.values.popitem(last=False)
