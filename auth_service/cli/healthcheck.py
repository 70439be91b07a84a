"""``python -m auth_service.cli.healthcheck [SOCKET]``: ask uWSGI's socket for ``GET /health``.

The container's HEALTHCHECK: it has no nginx and no HTTP port, only uWSGI's unix socket, so this
speaks the uwsgi protocol to it. Exits 0 on a 200, else 1 with one line on stderr. Standard
library only (the package's ``__init__`` imports nothing heavy), so a check every few seconds
costs a fraction of a second.

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


def check(path: str, timeout: float = TIMEOUT_SECONDS) -> tuple[bool, str]:
    """(healthy, a line saying why not) for the uWSGI socket at ``path``."""
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
    if parts[1] == "200":
        return True, ""
    return False, f"{path}: {status_line.partition(' ')[2]}{_problems(body)}"


def _problems(body: bytes) -> str:
    """The problems /health lists, as ': a; b', or nothing if the body isn't its JSON."""
    try:
        problems = json.loads(body)["problems"]
    except (ValueError, KeyError, TypeError):
        return ""
    return ": " + "; ".join(str(p) for p in problems) if problems else ""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: python -m auth_service.cli.healthcheck [SOCKET]", file=sys.stderr)
        return 1
    path = args[0] if args else os.environ.get("AUTH_SERVICE_SOCKET") or DEFAULT_SOCKET
    healthy, reason = check(path)
    if not healthy:
        print(f"unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
