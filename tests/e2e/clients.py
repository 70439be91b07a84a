"""Real registry clients for the end-to-end tests: running them, and the daemons some need.

Every program runs with a timeout, and every daemon keeps its state in a directory the test
gives it and is stopped by its PID. A missing program fails the test (``pytest.fail``), never
skips it: CI installs them all (``python3 -m auth_service.stack test``).

Facts these helpers rely on were measured on Debian 12 (skopeo 1.9, podman 4.3, docker.io
20.10, containerd 1.6); see the comments where a flag exists for a reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from auth_service.stack.main import DOCKER_CLI, Stack

from .conftest import fetch_token, http, password
from .images import Image

DOCKERD = "/usr/sbin/dockerd"
DEFAULT_TIMEOUT = 60.0
DAEMON_START_TIMEOUT = 30.0
DAEMON_STOP_TIMEOUT = 20.0


# --- running programs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """Exit code and the combined stdout+stderr of one finished command."""

    rc: int
    output: str

    def __str__(self) -> str:
        return f"exit {self.rc}:\n{self.output}"


def require(program: str) -> str:
    """The full path of ``program``; fails the test (not skips it) when it is not installed."""
    found = shutil.which(program, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if found is None:
        pytest.fail(
            f"{program} is not installed; `python3 -m auth_service.stack test` installs it",
            pytrace=False,
        )
    return found


def run(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Result:
    """Run a command to completion within ``timeout`` seconds; ``env`` is added to ours."""
    program = require(args[0])
    try:
        completed = subprocess.run(
            [program, *args[1:]],
            input=stdin if stdin is not None else "",
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as expired:
        # subprocess.run has killed the command; what it printed may be str or bytes by now.
        output = expired.output or ""
        if isinstance(output, bytes):
            output = output.decode(errors="replace")
        pytest.fail(f"{' '.join(args)} did not finish in {timeout:.0f}s:\n{output}")
    return Result(completed.returncode, completed.stdout)


# --- skopeo -------------------------------------------------------------------------------------


@dataclass
class Skopeo:
    """skopeo with its own signature policy and auth file, both in ``directory``."""

    directory: Path

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Our own policy: the system one may be missing or stricter on another machine.
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))

    @property
    def policy(self) -> Path:
        return self.directory / "policy.json"

    @property
    def auth_file(self) -> Path:
        return self.directory / "auth.json"

    def __call__(self, *args: str, timeout: float = DEFAULT_TIMEOUT) -> Result:
        """Run ``skopeo ARGS`` with this policy and auth file."""
        return run(
            ["skopeo", "--policy", str(self.policy), *args],
            env={"REGISTRY_AUTH_FILE": str(self.auth_file)},
            timeout=timeout,
        )

    def push(self, image: Image, destination: str, user: str = "alice") -> Result:
        """Copy a local OCI image to ``docker://DESTINATION`` as ``user``; must succeed."""
        result = self(
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"{user}:{password(user)}",
            image.reference,
            f"docker://{destination}",
        )
        assert result.rc == 0, f"pushing {image.reference} to {destination}: {result}"
        return result

    def convert(self, image: Image, transport: str, path: Path, name: str) -> Path:
        """Write ``image`` as a docker-archive or oci-archive at ``path``, named ``name``."""
        result = self("copy", image.reference, f"{transport}:{path}:{name}")
        assert result.rc == 0, f"writing {transport} {path}: {result}"
        return path


# --- podman -------------------------------------------------------------------------------------


@dataclass
class Podman:
    """podman (root, vfs storage) with its storage and every config file in ``directory``."""

    directory: Path
    registry: str

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "tmp").mkdir(exist_ok=True)
        # podman refuses to run when REGISTRY_AUTH_FILE names a file that does not exist.
        self.auth_file.write_text('{"auths": {}}')
        self.registries_conf.write_text(
            f"""unqualified-search-registries = []

[[registry]]
location = "{self.registry}"
# Plain HTTP: the test stack has no TLS.
insecure = true
"""
        )
        self.containers_conf.write_text(
            f"""[engine]
# No systemd here; and events must not go to the journal or /run.
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{self.directory / "events.log"}"
tmp_dir = "{self.directory / "tmp"}"
"""
        )

    @property
    def registries_conf(self) -> Path:
        return self.directory / "registries.conf"

    @property
    def containers_conf(self) -> Path:
        return self.directory / "containers.conf"

    @property
    def auth_file(self) -> Path:
        return self.directory / "auth.json"

    def __call__(self, *args: str, timeout: float = DEFAULT_TIMEOUT) -> Result:
        """Run ``podman ARGS`` with this storage and these config files."""
        return run(
            [
                "podman",
                "--root", str(self.directory / "root"),
                "--runroot", str(self.directory / "runroot"),
                "--storage-driver", "vfs",
                "--tmpdir", str(self.directory / "tmp"),
                *args,
            ],
            env={
                "CONTAINERS_CONF": str(self.containers_conf),
                "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
                "REGISTRY_AUTH_FILE": str(self.auth_file),
            },
            timeout=timeout,
        )  # fmt: skip


# --- the registry, seen over HTTP ----------------------------------------------------------------


def registry_tags(stack: Stack, repository: str) -> list[str] | None:
    """The repository's tags as the registry lists them to admin; None if it has none."""
    token = fetch_token(stack, f"scope=repository:{repository}:pull", user="admin")
    status, _, body = http(
        "GET", f"{stack.url}/v2/{repository}/tags/list", {"Authorization": f"Bearer {token}"}
    )
    if status == 404:
        return None
    assert status == 200, body
    return json.loads(body).get("tags") or None


def access_log(stack: Stack) -> list[str]:
    """nginx's access log of the stack, one request a line."""
    path = stack.state_dir / "nginx-access.log"
    return path.read_text(errors="replace").splitlines() if path.exists() else []


def mount_requests(stack: Stack, target: str, source: str) -> list[str]:
    """Access-log lines of cross-repository mounts into ``target`` from ``source``."""
    # Clients URL-encode the '/' in from=; the query parameters come in either order.
    source_pattern = re.escape(source).replace("/", "(?:/|%2F)")
    pattern = re.compile(
        rf'"POST /v2/{re.escape(target)}/blobs/uploads/\?'
        rf'(?=[^" ]*mount=sha256)(?=[^" ]*from={source_pattern}(?:&|\s))[^"]*" (\d{{3}}) '
    )
    return [line for line in access_log(stack) if pattern.search(line)]


def mount_status(line: str) -> int:
    """The HTTP status nginx logged for one request line of the access log."""
    match = re.search(r'" (\d{3}) ', line)
    assert match, line
    return int(match.group(1))


# --- daemons ------------------------------------------------------------------------------------


@dataclass
class Daemon:
    """A program started in its own session, logging to a file, stopped by its PID."""

    name: str
    command: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the program; call ``wait_until`` afterwards."""
        require(self.command[0])
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, **self.env},
                start_new_session=True,  # its own process group, so a kill reaches its children
            )

    def log_tail(self, size: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-size:]

    def wait_until(self, ready, timeout: float = DAEMON_START_TIMEOUT) -> None:
        """Poll ``ready()`` until it is true; fail with the log when the daemon dies or hangs."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                rc = self.process.returncode
                pytest.fail(f"{self.name} exited with {rc}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} not ready after {timeout:.0f}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = DAEMON_STOP_TIMEOUT) -> None:
        """SIGTERM the daemon and wait; SIGKILL its process group if it does not exit in time."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            # The group is the one start() created for this daemon: its children die with it.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _unix_http_ok(socket_path: Path, path: str) -> bool:
    """True when an HTTP server on the unix socket answers ``GET path`` with 200."""
    if not socket_path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(2)
            client.connect(str(socket_path))
            client.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
            return client.recv(64).startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
    except OSError:
        return False


def _mounted(path: Path) -> bool:
    mount_points = (line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines())
    return str(path) in mount_points


@dataclass
class Dockerd:
    """A private dockerd (Debian docker.io) with all its state in ``directory``."""

    directory: Path
    registry: str
    daemon: Daemon | None = None
    _created_outside: list[Path] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.directory / "docker.sock"

    @property
    def exec_root(self) -> Path:
        return self.directory / "exec"

    def command(self) -> list[str]:
        # The trust key would go to /etc/docker/key.json; 20.10 has no flag for it, only this key.
        config = {"deprecated-key-path": str(self.directory / "key.json")}
        (self.directory / "daemon.json").write_text(json.dumps(config))
        return [
            DOCKERD,
            "--config-file", str(self.directory / "daemon.json"),
            "--data-root", str(self.directory / "data"),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.directory / "dockerd.pid"),
            "-H", f"unix://{self.socket}",
            # No networking set-up on the host: the tests only push and pull.
            "--iptables=false", "--ip6tables=false", "--ip-masq=false",
            "--bridge=none", "--userland-proxy=false",
            "--storage-driver", "vfs",
            # 127.0.0.0/8 is insecure by default; say so anyway, in case that default changes.
            "--insecure-registry", self.registry,
        ]  # fmt: skip

    def start(self) -> None:
        """Start dockerd and wait until its API answers."""
        # dockerd creates these whatever its flags say; stop() removes them if they were new.
        outside = (Path("/run/docker/plugins"), Path("/run/docker"))
        self._created_outside = [path for path in outside if not path.exists()]
        self.directory.mkdir(parents=True, exist_ok=True)
        self.daemon = Daemon("dockerd", self.command(), self.directory / "dockerd.log")
        self.daemon.start()
        self.daemon.wait_until(lambda: _unix_http_ok(self.socket, "/_ping"))

    def stop(self) -> None:
        """Stop dockerd (and so its containerd) and clean up what it leaves behind."""
        if self.daemon is not None:
            self.daemon.stop()
        # dockerd leaves its network-namespace bind mount behind when it exits.
        netns = self.exec_root / "netns" / "default"
        if _mounted(netns):
            unmounted = run(["umount", str(netns)], timeout=10)
            assert unmounted.rc == 0, f"umount {netns}: {unmounted}"
        for path in self._created_outside:
            with contextlib.suppress(OSError):
                path.rmdir()  # only if empty: another dockerd may be using it by now

    def docker(self, config: Path, *args: str, stdin: str | None = None) -> Result:
        """Run the Debian docker CLI against this daemon, with client config in ``config``."""
        config.mkdir(parents=True, exist_ok=True)
        return run(
            [DOCKER_CLI, *args],
            env={"DOCKER_HOST": f"unix://{self.socket}", "DOCKER_CONFIG": str(config)},
            stdin=stdin,
        )


@contextmanager
def running_dockerd(directory: Path, registry: str) -> Iterator[Dockerd]:
    """A started dockerd, stopped at the end whatever happens."""
    dockerd = Dockerd(directory, registry)
    try:
        dockerd.start()
        yield dockerd
    finally:
        dockerd.stop()


@dataclass
class Containerd:
    """A private containerd (version 2 config, no CRI) with all its state in ``directory``."""

    directory: Path
    daemon: Daemon | None = None

    @property
    def socket(self) -> Path:
        return self.directory / "containerd.sock"

    def write_config(self) -> Path:
        """containerd's config.toml: every path it writes to is under ``directory``."""
        path = self.directory / "config.toml"
        path.write_text(
            f"""version = 2
root = "{self.directory / "root"}"
state = "{self.directory / "state"}"
# CRI would want CNI, a sandbox image and more: the tests only pull and push.
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{self.socket}"

[ttrpc]
  address = ""

[debug]
  address = "{self.directory / "debug.sock"}"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  # Otherwise /opt/containerd.
  path = "{self.directory / "opt"}"
"""
        )
        return path

    def start(self) -> None:
        """Start containerd and wait until ctr can talk to it."""
        self.directory.mkdir(parents=True, exist_ok=True)
        command = ["containerd", "--config", str(self.write_config())]
        self.daemon = Daemon("containerd", command, self.directory / "containerd.log")
        self.daemon.start()
        self.daemon.wait_until(
            lambda: self.socket.exists() and self.ctr("version", timeout=5).rc == 0
        )

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    def ctr(self, *args: str, timeout: float = DEFAULT_TIMEOUT) -> Result:
        """Run ``ctr ARGS`` against this containerd."""
        return run(["ctr", "--address", str(self.socket), *args], timeout=timeout)


@contextmanager
def running_containerd(directory: Path) -> Iterator[Containerd]:
    """A started containerd, stopped at the end whatever happens."""
    containerd = Containerd(directory)
    try:
        containerd.start()
        yield containerd
    finally:
        containerd.stop()
