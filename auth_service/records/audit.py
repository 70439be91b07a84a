"""The audit log: one JSON line per token request, saying who asked for what and what they got.

It names the client (the address nginx passes, and the ``client_id`` it sent), the user (the
claimed name on a failed login, null for an anonymous client), the service, the scopes asked
for, the access granted, the outcome, the HTTP status and the time taken, plus the token's
``jti``, which the registry's own log can be searched for. It never holds a password, a token or
an Authorization header: nothing here is given one.

Each line is a single ``write`` to a file opened for appending, so the lines of all uWSGI
workers never interleave. ``AUDIT_LOG = "-"`` (the default) writes to standard error, which is
uWSGI's log; a path writes to that file, reopened when it is rotated away (moved or deleted).

A line is one record however it is split: the user name, scopes and ``client_id`` come from the
client, and JSON leaves some characters raw that end a line for ``str.splitlines()`` (U+0085,
U+2028, U+2029) or act on a terminal (DEL, the C1 controls, bidirectional overrides). Those are
written as JSON escapes (:func:`auth_service.records.json_text.log_json`); other non-ASCII
letters stay readable.

Under uWSGI's ``logger``, standard error is a non-blocking socket to the master's log thread.
When a burst outruns that thread the socket is full, and a write fails with EAGAIN (or writes
part of a line): the line then waits for room, up to :data:`WRITE_WAIT_SECONDS`. A line that
still cannot be written raises :class:`AuditUnavailable`, and the request is refused (503) rather
than answered with a token nobody recorded.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from auth_service.errors import AuditUnavailable
from auth_service.records.json_text import log_json
from auth_service.records.timestamps import rfc3339_millis

__all__ = ["AuditLog", "AuditUnavailable", "AuditedRequest", "token_line"]

STDERR = 2
REOPEN_CHECK_SECONDS = 1.0
# Far longer than uWSGI's log thread takes to drain a burst; far shorter than harakiri (30 s).
WRITE_WAIT_SECONDS = 5.0


class AuditedRequest(Protocol):
    """What an audit line says about the request, as the token endpoint read it."""

    @property
    def method(self) -> str: ...
    @property
    def grant_type(self) -> str: ...
    @property
    def client(self) -> str | None: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def scopes(self) -> Sequence[str]: ...


def token_line(
    request: AuditedRequest,
    outcome: str,
    status: int,
    seconds: float,
    *,
    user: str | None,
    service: str | None,
    access: Sequence[str] = (),
    token_id: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The audit record of one answered token request.

    ``user`` and ``service`` are those the token was made for, or, for a refusal, those the
    client named; ``reason`` says why a request was refused.
    """
    record: dict[str, Any] = {
        "time": rfc3339_millis(time.time()),
        "event": "token",
        "client": request.client,
        "client_id": request.client_id,
        "method": request.method,
        "grant_type": request.grant_type,
        "user": user,
        "service": service,
        "scopes": [scope for value in request.scopes for scope in value.split()],
        "access": list(access),
        "outcome": outcome,
        "status": status,
        "latency_ms": round(seconds * 1000, 3),
    }
    if token_id:
        record["jti"] = token_id
    if reason:
        record["reason"] = reason
    return record


class AuditLog:
    """Where audit lines go: standard error, a file, or nowhere."""

    def __init__(self, path: Path | None, enabled: bool = True) -> None:
        self.path = path
        self.enabled = enabled
        self._lock = threading.Lock()
        self._fd = STDERR
        self._identity: tuple[int, int] | None = None
        self._checked_at = 0.0
        if enabled and path is not None:
            self._open()

    def _open(self) -> None:
        assert self.path is not None
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        stat = os.fstat(fd)
        old, self._fd, self._identity = self._fd, fd, (stat.st_dev, stat.st_ino)
        if old != STDERR:
            os.close(old)

    def _reopen_if_rotated(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < REOPEN_CHECK_SECONDS:
            return
        self._checked_at = now
        try:
            stat = os.stat(self.path)  # type: ignore[arg-type]
            rotated = (stat.st_dev, stat.st_ino) != self._identity
        except FileNotFoundError:
            rotated = True
        if rotated:
            self._open()

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one line; raises AuditUnavailable if no line is taken in time."""
        if not self.enabled:
            return
        data = (log_json(record) + "\n").encode("utf-8", "backslashreplace")
        with self._lock:  # one line at a time in this process, whole, in order
            if self.path is not None:
                self._reopen_if_rotated()
            _write_all(self._fd, data)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``; when ``fd`` is a full non-blocking pipe or socket, wait for room."""
    try:
        written = os.write(fd, data)  # nearly always the whole line at once
    except BlockingIOError:
        written = 0
    if written == len(data):
        return
    deadline = time.monotonic() + WRITE_WAIT_SECONDS
    rest = memoryview(data)[written:]
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    while rest:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            raise AuditUnavailable(f"the audit log took no line for {WRITE_WAIT_SECONDS:g}s")
        try:
            rest = rest[os.write(fd, rest) :]
        except BlockingIOError:  # another writer took the room first
            time.sleep(0.001)
