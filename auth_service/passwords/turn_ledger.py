"""The machine-wide ledger of bcrypt turns: how many each client address has had, and which
login each worker would start next, shared by a process and every worker forked from it.

Each uWSGI worker keeps its own queue of waiting logins, but the turns are the machine's: a
worker whose queue holds the address served least so far must win the next free turn, not the
worker that happens to look first, or an address whose logins landed in a busy worker gets a
fraction of its share. So the workers keep, in shared memory:

- per client address, the turns it has had in its current busy spell (since it last had no
  login waiting or running anywhere) and how many of its logins are waiting or running;
- per worker, the score of the login it would start next (its address's turns so far).

A worker starts a login only if no other live worker has one with a lower score. The memory is
an anonymous shared mapping made before the fork; a byte lock on an inherited file serialises
the workers (the kernel drops it if its holder dies), and a thread lock the threads of one
worker, as a process never conflicts with its own POSIX locks.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from auth_service.forked import PerProcess

_ADDRESS = struct.Struct("<QII")  # address key (0: free), turns had, logins present
_WORKER = struct.Struct("<iI")  # pid (0: free), score of its next login
ADDRESS_SLOTS = 4096
WORKER_SLOTS = 64
NO_LOGIN = 0xFFFFFFFF  # a worker with nothing waiting
MAX_PROBES = 32


def _key(address: str) -> int:
    digest = hashlib.blake2b(address.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1  # 0 marks a free slot


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process reuses the pid: not one of ours
        return False
    return True


@dataclass
class _Here:
    """A worker's own side of the ledger: its threads' lock, and its slot among the workers."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    slot: int = -1


class TurnLedger:
    """Turns per address and next scores per worker, in memory every forked worker shares."""

    def __init__(self) -> None:
        self._workers_at = ADDRESS_SLOTS * _ADDRESS.size
        self._map = mmap.mmap(-1, self._workers_at + WORKER_SLOTS * _WORKER.size)
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 (its byte 0 is the lock)
        self._here: PerProcess[_Here] = PerProcess(_Here)

    @contextmanager
    def locked(self) -> Iterator[TurnLedger]:
        """Hold the ledger against every thread of every worker."""
        with self._here.get().lock:
            fcntl.lockf(self._file, fcntl.LOCK_EX, 1, 0)
            try:
                yield self
            finally:
                fcntl.lockf(self._file, fcntl.LOCK_UN, 1, 0)

    # --- per address (call under locked()) ---

    def _find(self, address: str, insert: bool, compacted: bool = False) -> int | None:
        key = _key(address)
        start = key % ADDRESS_SLOTS
        for probe in range(ADDRESS_SLOTS):
            slot = (start + probe) % ADDRESS_SLOTS
            found, _, _ = _ADDRESS.unpack_from(self._map, slot * _ADDRESS.size)
            if found == key:
                return slot
            if found == 0:
                if not insert:
                    return None
                _ADDRESS.pack_into(self._map, slot * _ADDRESS.size, key, 0, 0)
                return slot
            if insert and probe >= MAX_PROBES and not compacted:
                # Addresses whose spell ended keep their slot until a long probe: drop them.
                return self._find(address, insert, compacted=True) if self._compact() else None
        return None

    def _compact(self) -> bool:
        """Drop the addresses with nothing present (their spell is over); whether room was made."""
        live = []
        for slot in range(ADDRESS_SLOTS):
            entry = _ADDRESS.unpack_from(self._map, slot * _ADDRESS.size)
            if entry[0] and entry[2]:
                live.append(entry)
        if len(live) > ADDRESS_SLOTS // 2:  # still crowded after it: not worth it
            return False
        self._map[: self._workers_at] = bytes(self._workers_at)
        for key, turns, present in live:
            slot = key % ADDRESS_SLOTS
            while _ADDRESS.unpack_from(self._map, slot * _ADDRESS.size)[0]:
                slot = (slot + 1) % ADDRESS_SLOTS
            _ADDRESS.pack_into(self._map, slot * _ADDRESS.size, key, turns, present)
        return True

    def _change(self, address: str, turns: int, present: int) -> None:
        slot = self._find(address, insert=True)
        if slot is None:  # a table full of busy addresses: this one goes unranked
            return
        key, had, here = _ADDRESS.unpack_from(self._map, slot * _ADDRESS.size)
        here = max(0, here + present)
        # A spell ends when nothing of the address waits or runs: its count starts afresh.
        had = had + turns if here else 0
        _ADDRESS.pack_into(self._map, slot * _ADDRESS.size, key, had, here)

    def arrived(self, address: str) -> None:
        """A login of ``address`` waits (or starts at once)."""
        self._change(address, 0, +1)

    def left(self, address: str) -> None:
        """A login of ``address`` ended, or gave up waiting."""
        self._change(address, 0, -1)

    def started(self, address: str) -> None:
        """A login of ``address`` got a turn."""
        self._change(address, +1, 0)

    def turns_had(self, address: str) -> int:
        """The turns ``address`` has had in its current spell."""
        slot = self._find(address, insert=False)
        return 0 if slot is None else _ADDRESS.unpack_from(self._map, slot * _ADDRESS.size)[1]

    # --- per worker (call under locked()) ---

    def _own_slot(self) -> int:
        here, me = self._here.get(), os.getpid()
        if here.slot < 0:
            for slot, pid, _ in self._workers():
                if pid in (0, me) or not _alive(pid):
                    here.slot = slot
                    break
            else:  # more workers than slots: this one ranks as if it had nothing waiting
                return -1
            self._write_worker(here.slot, me, NO_LOGIN)
        return here.slot

    def _workers(self) -> Iterable[tuple[int, int, int]]:
        region = memoryview(self._map)[self._workers_at :]
        for slot, (pid, score) in enumerate(_WORKER.iter_unpack(region)):
            yield slot, pid, score

    def _write_worker(self, slot: int, pid: int, score: int) -> None:
        _WORKER.pack_into(self._map, self._workers_at + slot * _WORKER.size, pid, score)

    def publish(self, score: int | None) -> None:
        """This worker's next login scores ``score`` (None: it has none waiting)."""
        slot = self._own_slot()
        if slot >= 0:
            self._write_worker(slot, os.getpid(), NO_LOGIN if score is None else score)
        if score is None and self.lowest_elsewhere() == NO_LOGIN:
            # Nobody waits anywhere: every spell is over. Starting afresh also drops what a
            # worker killed mid-check left counted, which would rank its addresses last for good.
            self._map[: self._workers_at] = bytes(self._workers_at)

    def lowest_elsewhere(self) -> int:
        """The lowest score another live worker has published (NO_LOGIN if none waits)."""
        own = self._own_slot()
        lowest = NO_LOGIN
        for slot, pid, score in self._workers():
            if pid == 0 or slot == own or score >= lowest:
                continue
            if _alive(pid):
                lowest = score
            else:  # a worker that died (killed, harakiri) waits for nothing
                self._write_worker(slot, 0, NO_LOGIN)
        return lowest
