"""A real ``redis-server`` (Debian's) for the tests: started, stopped, paused, started again.

    with RedisServer(tcp=True) as server:   # or the ``redis_server`` fixture (tests/conftest.py)
        server.url        # unix:///tmp/redis-.../redis.sock
        server.tcp_url    # redis://127.0.0.1:PORT/0 (with tcp=True)
        server.client()   # a redis-py client on it, for the test's own looks
        server.stop()     # Redis lost: connections refused
        server.start()    # back, on the same socket and port, empty
        server.pause()    # cut off: connections are accepted, never answered (SIGSTOP)
        server.resume()   # answering again (SIGCONT), its data kept

Nothing is saved to disk (``--save '' --appendonly no``). The socket lives in a short directory
of its own under the temporary directory (a unix socket's path is limited to 107 bytes, which
pytest's own directories can exceed). A missing ``redis-server`` fails the test: CI installs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import pytest
import redis

from auth_service.stack.main import free_port

REDIS_SERVER = "redis-server"
START_SECONDS = 10.0


class RedisServer:
    """One redis-server on a unix socket (and, with ``tcp``, a port on 127.0.0.1)."""

    def __init__(self, tcp: bool = False, directory: Path | None = None) -> None:
        self.program = shutil.which(REDIS_SERVER)
        if self.program is None:
            pytest.fail(f"{REDIS_SERVER} is not installed (Debian's redis-server package)")
        self._own_directory = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="redis-")) if directory is None else directory
        self.socket = self.directory / "redis.sock"
        self.port = free_port() if tcp else None
        self.log = self.directory / "redis.log"
        self.process: subprocess.Popen | None = None
        self.paused = False

    @property
    def url(self) -> str:
        """The unix socket's URL, for ``REDIS_URL``."""
        return f"unix://{self.socket}"

    @property
    def tcp_url(self) -> str:
        """The TCP URL, for ``REDIS_URL`` (with ``tcp=True`` only)."""
        assert self.port is not None, "RedisServer(tcp=True) listens on TCP"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process ID while it runs."""
        return self.process.pid if self.process is not None else None

    def client(self, timeout: float = 2.0) -> redis.Redis:
        """A client on the unix socket, for a test's own looks at the data."""
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=timeout)

    def start(self) -> RedisServer:
        """Start it (again, after :meth:`stop`, on the same socket and port: empty) and wait
        until it answers PING."""
        assert self.process is None, "already running"
        command = [
            self.program,
            "--port",
            str(self.port or 0),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.log),
            "--daemonize",
            "no",
        ]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        self.paused = False
        deadline = time.monotonic() + START_SECONDS
        probe = self.client(timeout=0.5)
        try:
            while True:
                if self.process.poll() is not None:
                    code, self.process = self.process.returncode, None
                    pytest.fail(f"redis-server exited {code}: {self._log_tail()}")
                try:
                    if probe.ping():
                        return self
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"redis-server did not answer in {START_SECONDS} s")
                time.sleep(0.02)
        finally:
            probe.close()

    def stop(self) -> None:
        """Stop it (resumed first if paused): its clients' connections are refused from now."""
        if self.process is None:
            return
        process, self.process = self.process, None
        if self.paused:
            os.kill(process.pid, signal.SIGCONT)
            self.paused = False
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def pause(self) -> None:
        """Cut it off: its socket still accepts connections (the kernel's backlog), but it
        answers nothing until :meth:`resume`."""
        assert self.process is not None, "not running"
        os.kill(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """Answer again after :meth:`pause`."""
        assert self.process is not None, "not running"
        os.kill(self.process.pid, signal.SIGCONT)
        self.paused = False

    def close(self) -> None:
        """Stop it, and remove its directory if it made it."""
        self.stop()
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
