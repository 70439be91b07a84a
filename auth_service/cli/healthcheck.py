"""``python -m auth_service.cli.healthcheck [--live | --ready] [SOCKET]``: ask uWSGI's socket
for ``GET /health``.

The container's HEALTHCHECK: it has no nginx and no HTTP port, only uWSGI's unix socket, so this
speaks the uwsgi protocol to it. Exits 0 when the check passes, else 1 with one line on stderr.
Standard library only (the package's ``__init__`` imports nothing heavy), so a check every few
seconds costs a fraction of a second.

- no option: healthy, ``/health`` answers 200 (Docker's HEALTHCHECK, docker-compose.yml);
- ``--live``: uWSGI answers at all, whatever the status (Kubernetes' liveness probe): a bad edit
  of the configuration fails health, and restarting for it would not help, as the restarted
  service would refuse to start with the bad file;
- ``--ready``: healthy, or failing only checks that leave every request served
  (:data:`SERVING_DESPITE`; Kubernetes' readiness probe): every replica sees a bad edit of a
  mounted Secret at once, and taking them all out of the Service would refuse every client that
  the last good configuration still serves.

SOCKET defaults to ``$AUTH_SERVICE_SOCKET``, else uwsgi.ini's default.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from collections.abc import Mapping, Sequence

DEFAULT_SOCKET = "/run/auth-service/token.sock"  # uwsgi.ini's default
TIMEOUT_SECONDS = 4.0  # under the HEALTHCHECK's --timeout=5s
MAX_RESPONSE_BYTES = 64 * 1024

# What is checked: /health answering 200, uWSGI answering at all, or serving every request.
HEALTHY, LIVE, READY = "healthy", "live", "ready"
MODE_OPTIONS = {"--live": LIVE, "--ready": READY}
FAILURE_PREFIX = {HEALTHY: "unhealthy", LIVE: "not live", READY: "not ready"}
# /health's checks whose failure leaves the last good version serving every request: a failed
# reload of the access files (README, "Reloading and errors").
SERVING_DESPITE = frozenset({"last_reload_ok"})
USAGE = "usage: python -m auth_service.cli.healthcheck [--live | --ready] [SOCKET]"

HEALTH_REQUEST = {
    "REQUEST_METHOD": "GET",
    "PATH_INFO": "/health",
    "REQUEST_URI": "/health",
    "QUERY_STRING": "",
    "SERVER_NAME": "localhost",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "HTTP_HOST": "localhost",
    "HTTP_USER_AGENT": "auth-service-healthcheck",
}


def uwsgi_packet(variables: Mapping[str, str]) -> bytes:
    """A uwsgi request without a body: modifier1 0, the vars block's size (16-bit LE),
    modifier2 0, then each key and value prefixed with its 16-bit LE length."""
    block = b"".join(
        struct.pack("<H", len(raw)) + raw
        for key, value in variables.items()
        for raw in (key.encode("latin-1"), value.encode("latin-1"))
    )
    return struct.pack("<BHB", 0, len(block), 0) + block


def _read_response(connection: socket.socket) -> bytes:
    chunks, size = [], 0
    while size < MAX_RESPONSE_BYTES:
        chunk = connection.recv(8192)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def check(path: str, timeout: float = TIMEOUT_SECONDS, mode: str = HEALTHY) -> tuple[bool, str]:
    """(passed, a line saying why not) for the uWSGI socket at ``path``, in ``mode``: HEALTHY,
    LIVE or READY (see the module's docstring)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(path)
            connection.sendall(uwsgi_packet(HEALTH_REQUEST))
            response = _read_response(connection)
    except OSError as exc:
        return False, f"{path}: {exc.strerror or exc}"
    head, _, body = response.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return False, f"{path}: no HTTP response (got {status_line[:80]!r})"
    if parts[1] == "200" or mode == LIVE:
        return True, ""
    if mode == READY and parts[1] == "503":
        failing = _failing_checks(body)
        if failing is not None and failing <= SERVING_DESPITE:
            return True, ""
    return False, f"{path}: {status_line.partition(' ')[2]}{_problems(body)}"


def _failing_checks(body: bytes) -> set[str] | None:
    """The names of the checks /health's body says failed; None when the body doesn't say (not
    its JSON, or a 503 that names no failed check)."""
    try:
        checks = json.loads(body)["checks"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(checks, dict):
        return None
    return {str(name) for name, passed in checks.items() if passed is not True} or None


def _problems(body: bytes) -> str:
    """The problems /health lists, as ': a; b', or nothing if the body isn't its JSON."""
    try:
        problems = json.loads(body)["problems"]
    except (ValueError, KeyError, TypeError):
        return ""
    return ": " + "; ".join(str(p) for p in problems) if problems else ""


def main(argv: Sequence[str] | None = None) -> int:
    """Check the socket given, or ``$AUTH_SERVICE_SOCKET``, in the mode an option names; 0 when
    the check passes, else 1 with one line on stderr."""
    args = list(sys.argv[1:] if argv is None else argv)
    mode = HEALTHY
    if args and args[0] in MODE_OPTIONS:
        mode = MODE_OPTIONS[args.pop(0)]
    if len(args) > 1 or (args and args[0].startswith("-")):
        print(USAGE, file=sys.stderr)
        return 1
    path = args[0] if args else os.environ.get("AUTH_SERVICE_SOCKET") or DEFAULT_SOCKET
    passed, reason = check(path, mode=mode)
    if not passed:
        print(f"{FAILURE_PREFIX[mode]}: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
