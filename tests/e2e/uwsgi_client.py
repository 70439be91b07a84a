"""Requests straight to one token-service instance, on its uWSGI socket, past nginx: as nginx
sends them (the uwsgi protocol, the variables of uwsgi_params), from the client address given.

nginx picks an instance per request; a test that must ask a given instance (its /health, its
/metrics, whether it refuses a token) talks to that instance's socket with this.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auth_service.cli.healthcheck import uwsgi_packet


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    path: Path,
    method: str,
    uri: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    client: str = "127.0.0.1",
    timeout: float = 30.0,
) -> Answer:
    """``method uri`` (path and query) from ``client`` to the uWSGI socket at ``path``."""
    route, _, query = uri.partition("?")
    variables = {
        "REQUEST_METHOD": method,
        "REQUEST_URI": uri,
        "PATH_INFO": route,
        "QUERY_STRING": query,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": client,
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_LENGTH": str(len(body)) if body else "",
        "CONTENT_TYPE": (headers or {}).get("Content-Type", ""),
    }
    for name, value in (headers or {}).items():
        if name.lower() != "content-type":
            variables["HTTP_" + name.upper().replace("-", "_")] = value
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        connection.connect(str(path))
        connection.sendall(uwsgi_packet(variables) + body)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    head, _, answer_body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answer_headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
    return Answer(int(status_line.split()[1]), answer_headers, answer_body)


def health(path: Path) -> Answer:
    """The instance's ``GET /health``."""
    return request(path, "GET", "/health")


def metric(path: Path, name: str, **labels: str) -> float:
    """The value of one sample of the instance's ``/metrics`` (0 when absent)."""
    text = request(path, "GET", "/metrics").body.decode()
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    sample = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0
