"""The whole stack on one machine: Debian's docker-registry, uWSGI and nginx, on 127.0.0.1.

    python3 -m auth_service.stack up [--port 5000] [--proxy] [--instances N]
                                     [--redis | --redis-url URL]
                                                      install what is missing, start, show usage;
                                                      --proxy: proxy mode (Basic credentials
                                                      straight to the registry, nginx swaps them
                                                      for a token on each request);
                                                      --instances: N token-service instances
                                                      behind nginx; --redis: their shared state
                                                      in a redis-server the stack starts, or
                                                      --redis-url: in yours
    python3 -m auth_service.stack down                stop exactly the processes `up` started
    python3 -m auth_service.stack status              say what is running
    python3 -m auth_service.stack install [--test]    only install what `up` (or `test`) needs
    python3 -m auth_service.stack test [PYTEST ARGS]  install what the tests need, run pytest

It runs with nothing but the standard library on a fresh Debian machine: it installs the Debian
packages it needs (as root), creates `.venv` with the project installed, and re-runs itself in
that environment. The end-to-end tests drive the same :class:`Stack` on free ports in temporary
directories, with the same nginx template and `uwsgi.ini`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"
LOCAL_STATE = REPO / ".stack"
DEFAULT_PORT = 5000
SYSTEM_NGINX_DIR = Path("/etc/nginx")
# `up --redis`: the stack starts a redis-server of its own (else `--redis-url` gives one).
OWN_REDIS = "own"
# `up --instances`: each instance is a uWSGI master with its workers, so a few fill a machine.
MAX_INSTANCES = 16
# How clients authenticate (registry.conf.template's AUTH_MODE): token, the default, or proxy.
TOKEN_MODE, PROXY_MODE = "token", "proxy"
AUTH_MODES = (TOKEN_MODE, PROXY_MODE)
# Files of nginx/ that registry.conf.template includes by a path relative to nginx.conf: the
# JSON errors, and each mode's two includes (auth-${AUTH_MODE}.conf and its locations).
NGINX_INCLUDES = (
    "json-errors.conf",
    *(f"auth-{mode}{part}.conf" for mode in AUTH_MODES for part in ("", "-locations")),
)

# Debian packages, by the command that shows they are installed.
STACK_PACKAGES = {"nginx": "nginx", "docker-registry": "docker-registry"}
# The shared state of several instances (`up --redis`, and the tests start their own).
REDIS_PACKAGES = {"redis-server": "redis-server"}
# Packages whose installation starts a system service that must not run: the stack and the tests
# start their own redis-server on a private socket, and one left listening on port 6379 would be
# shared state nobody configured.
KEEP_STOPPED_SERVICES = {"redis-server": "redis-server"}
TEST_PACKAGES = {
    **STACK_PACKAGES,
    "skopeo": "skopeo",
    "podman": "podman",
    "dockerd": "docker.io",
    "containerd": "containerd",
    "ctr": "containerd",
    "curl": "curl",
    # The README's command to find a denied push in the audit log (test_operator_journey.py).
    "jq": "jq",
    # The README's recipe for a key and certificate made by hand (tests/test_readme.py).
    "openssl": "openssl",
    # A burst beyond uWSGI's default listen queue (test_overload.py), as the benchmarks drive it.
    "wrk": "wrk",
    # Several instances sharing their state (tests/e2e/test_instances.py).
    **REDIS_PACKAGES,
    # The Kubernetes manifests, rendered with `kubectl kustomize` (deploy/).
    "kubectl": "kubernetes-client",
    # The nginx image's envsubst, rendering the site as a pod would (tests/deploy/).
    "envsubst": "gettext-base",
}
# Where `install --test` unpacks Debian 12's kubectl (ensure_debian_12_kubectl).
DEBIAN_12_KUBECTL_DIR = REPO / ".tools" / "kubernetes-client"
# The Debian docker CLI, matching its dockerd; another one may come first on PATH.
DOCKER_CLI = "/usr/bin/docker"

_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


class StackError(RuntimeError):
    """Something the stack needs is missing or did not start; the message says what."""


# --- installing what is missing ---------------------------------------------------------------


def _find(command: str) -> str | None:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return shutil.which(command, path=path)


def ensure_debian_packages(wanted: Mapping[str, str]) -> None:
    """apt-get install the packages whose commands are missing (needs root)."""
    missing = sorted({package for command, package in wanted.items() if not _find(command)})
    if not missing:
        return
    if os.geteuid() != 0:
        raise StackError(
            f"missing Debian packages {' '.join(missing)}: run as root, or "
            f"apt-get install {' '.join(missing)}"
        )
    print(f"installing Debian packages: {' '.join(missing)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    for package, service in KEEP_STOPPED_SERVICES.items():
        if package in missing:
            stop_system_service(service)


def ensure_debian_12_kubectl() -> Path:
    """Debian 12's own kubectl (``kubernetes-client``, 1.20, with Kustomize 2.0.3), unpacked
    beside the project, not installed: the README promises that it renders deploy/kubernetes,
    and the machine's kubectl (which ``install --test`` leaves alone) may be a newer one."""
    kubectl = DEBIAN_12_KUBECTL_DIR / "usr" / "bin" / "kubectl"
    if kubectl.exists():
        return kubectl
    print("unpacking Debian's kubernetes-client for tests/deploy", flush=True)
    with tempfile.TemporaryDirectory() as download:
        fetch = ["apt-get", "download", "-q", "kubernetes-client"]
        quiet = {"cwd": download, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        if subprocess.run(fetch, check=False, **quiet).returncode != 0:
            # A fresh machine's package lists may not be there yet.
            subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
            subprocess.run(fetch, check=True, cwd=download, stdout=subprocess.DEVNULL)
        (package,) = Path(download).glob("kubernetes-client_*.deb")
        unpacked = Path(download) / "unpacked"
        subprocess.run(["dpkg-deb", "-x", str(package), str(unpacked)], check=True)
        # Moved into place whole, so that an unpacking cut short leaves nothing half there.
        DEBIAN_12_KUBECTL_DIR.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(unpacked), DEBIAN_12_KUBECTL_DIR)
    return kubectl


def stop_system_service(service: str) -> None:
    """Stop and disable a service its Debian package has just started (where nothing prevented
    it, as a container's policy-rc.d does): systemd's unit, else the init script."""
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": False}
    if Path("/run/systemd/system").is_dir() and _find("systemctl"):
        subprocess.run(["systemctl", "disable", "--now", service], **quiet)
    elif Path(f"/etc/init.d/{service}").exists():
        subprocess.run([f"/etc/init.d/{service}", "stop"], **quiet)
        if _find("update-rc.d"):
            subprocess.run(["update-rc.d", service, "disable"], **quiet)


def ensure_venv(extras: str = "serve,test") -> Path:
    """`.venv` with this project installed (editable); reinstalled when setup.cfg changes."""
    python = VENV / "bin" / "python"
    digest = hashlib.sha256((REPO / "setup.cfg").read_bytes() + extras.encode()).hexdigest()[:16]
    stamp = VENV / f".installed-{digest}"
    if stamp.exists() and python.exists():
        return python
    if not python.exists():
        print(f"creating {VENV}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    print(f"installing the project into {VENV} (first time: about a minute)", flush=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-e",
            f"{REPO}[{extras}]",
        ],
        check=True,
    )
    for old in VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()
    return python


def in_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


# --- rendering configuration --------------------------------------------------------------------


def render_template(text: str, values: Mapping[str, str]) -> str:
    """Fill ``${NAME}`` placeholders, as the nginx image's envsubst does; all must be given."""
    missing = sorted({name for name in _PLACEHOLDER.findall(text) if name not in values})
    if missing:
        raise StackError(f"no value for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Stack:
    """Registry, uWSGI and nginx for one config directory, everything under ``state_dir``."""

    state_dir: Path
    config_dir: Path
    port: int
    issuer: str
    service: str
    cert_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    # (certificate, key) to serve HTTPS with the production TLS settings of nginx/tls.conf
    tls: tuple[Path, Path] | None = None
    # uWSGI options after `--ini uwsgi.ini`, which they override: the benchmarks serve their
    # ceiling app this way (`--module`) and try other `--threads`.
    uwsgi_options: list[str] = field(default_factory=list)
    # AUTH_MODE: "token" (clients fetch tokens at /v2/token) or "proxy" (nginx asks the token
    # service about each registry request; nginx/auth-proxy.conf).
    auth_mode: str = TOKEN_MODE
    # Token-service instances, each its own uWSGI master with its own socket, log and PID file,
    # all in nginx's upstream. One keeps the names a single instance always had (`uwsgi`,
    # auth.sock); several are `uwsgi-1`... with auth-1.sock...
    instances: int = 1
    # An instance's own settings over ``extra_env``, by its name (``uwsgi-2``): its own config
    # directory, say, as a pod has its own mount of the configuration.
    instance_env: dict[str, dict[str, str]] = field(default_factory=dict)
    # The instances' shared state (REDIS_URL): a Redis server of the caller's, or, with
    # ``own_redis``, a redis-server this stack starts on a socket in ``state_dir``.
    redis_url: str | None = None
    own_redis: bool = False
    processes: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    @classmethod
    def for_config_dir(cls, state_dir: Path, config_dir: Path, port: int) -> Stack:
        """A stack whose registry trusts what the config directory's settings sign with."""
        from auth_service.files.settings import load_settings

        settings = load_settings(config_dir)
        if settings.cert_path is None:
            raise StackError(
                f"{config_dir}/config.py: CERT_PATH: the registry needs the certificate to trust"
            )
        if not settings.services:
            raise StackError(f"{config_dir}/config.py: SERVICE: the registry needs its name")
        return cls(
            state_dir.resolve(),
            config_dir.resolve(),
            port,
            settings.issuer,
            settings.services[0],
            settings.cert_path.resolve(),
        )

    # paths
    @property
    def instance_names(self) -> list[str]:
        """The token-service instances' names, as in their log and PID files."""
        if self.instances == 1:
            return ["uwsgi"]
        return [f"uwsgi-{number}" for number in range(1, self.instances + 1)]

    def socket_of(self, instance: str) -> Path:
        """The uWSGI socket of the instance named ``instance``."""
        if instance not in self.instance_names:
            raise StackError(f"no instance {instance!r}: {', '.join(self.instance_names)}")
        return self.state_dir / f"{instance.replace('uwsgi', 'auth')}.sock"

    @property
    def auth_socket(self) -> Path:
        """The only instance's socket, or the first's."""
        return self.socket_of(self.instance_names[0])

    @property
    def redis_socket(self) -> Path:
        return self.state_dir / "redis.sock"

    @property
    def shared_redis_url(self) -> str | None:
        """The REDIS_URL every instance gets: the stack's own server's, the caller's, or none."""
        if self.own_redis:
            return f"unix://{self.redis_socket}"
        return self.redis_url

    @property
    def registry_socket(self) -> Path:
        return self.state_dir / "registry.sock"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        return f"{self.url}/v2/token"

    def log_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.log"

    def pid_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.pid"

    # configuration files
    def write_configs(self) -> None:
        """Render the registry, nginx and site configuration into the state directory."""
        if self.auth_mode not in AUTH_MODES:
            raise StackError(f"auth mode {self.auth_mode!r}: one of {', '.join(AUTH_MODES)}")
        if self.instances < 1:
            raise StackError(f"instances: {self.instances}: at least 1")
        if self.own_redis and self.redis_url:
            raise StackError("either the stack's own Redis or a REDIS_URL, not both")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "nginx-tmp").mkdir(exist_ok=True)
        registry = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.state_dir / "registry-data")},
                "delete": {"enabled": True},
            },
            "http": {
                "net": "unix",
                "addr": str(self.registry_socket),
                "secret": hashlib.sha256(str(self.state_dir).encode()).hexdigest(),
            },
            "auth": {
                "token": {
                    "realm": self.realm,
                    "service": self.service,
                    "issuer": self.issuer,
                    "rootcertbundle": str(self.cert_path),
                }
            },
        }
        # JSON is YAML: no YAML library needed to write the registry's config.
        (self.state_dir / "registry.yml").write_text(json.dumps(registry, indent=2))
        for name in ("uwsgi_params", "mime.types"):
            shutil.copyfile(SYSTEM_NGINX_DIR / name, self.state_dir / name)
        # The site's include, beside nginx.conf as in the nginx container (docker-compose.yml).
        for name in NGINX_INCLUDES:
            shutil.copyfile(REPO / "nginx" / name, self.state_dir / name)
        site = render_template(
            (REPO / "nginx" / "registry.conf.template").read_text(),
            {
                "LISTEN": f"127.0.0.1:{self.port}" + (" ssl" if self.tls else ""),
                "SERVER_NAME": "127.0.0.1 localhost",
                "TLS_INCLUDE": str(self._tls_include()),
                # One line per instance; nginx's defaults (max_fails=1 fail_timeout=10s) skip
                # a dead one after its first refused connection and try it again 10 s later.
                "AUTH_SERVERS": "\n    ".join(
                    f"server unix:{self.socket_of(name)};" for name in self.instance_names
                ),
                "REGISTRY_SERVERS": f"server unix:{self.registry_socket};",
                "AUTH_MODE": self.auth_mode,
            },
        )
        (self.state_dir / "site.conf").write_text(site)
        import pwd

        main = render_template(
            (REPO / "nginx" / "standalone.conf.template").read_text(),
            {
                "STATE_DIR": str(self.state_dir),
                "USER": pwd.getpwuid(os.geteuid()).pw_name,
                "SITE_CONF": str(self.state_dir / "site.conf"),
            },
        )
        (self.state_dir / "nginx.conf").write_text(main)

    def _tls_include(self) -> Path:
        """nginx/tls.conf as is, but with this stack's certificate and key in place of the
        paths the nginx container mounts them at."""
        if self.tls is None:
            return REPO / "nginx" / "plain-http.conf"
        cert, key = self.tls
        text = (REPO / "nginx" / "tls.conf").read_text()
        text = text.replace("/etc/nginx/tls/fullchain.pem", str(cert))
        text = text.replace("/etc/nginx/tls/privkey.pem", str(key))
        include = self.state_dir / "tls.conf"
        include.write_text(text)
        return include

    # processes
    def commands(self) -> dict[str, list[str]]:
        """Each program's command line, by name, in the order they start."""
        uwsgi = [
            str(Path(sys.executable).parent / "uwsgi"),
            "--ini",
            str(REPO / "uwsgi.ini"),
            *self.uwsgi_options,
        ]
        redis = {"redis": self._redis_command()} if self.own_redis else {}
        return {
            "registry": [
                _find("docker-registry") or "docker-registry",
                "serve",
                str(self.state_dir / "registry.yml"),
            ],
            # Before the instances, which use it from their first request.
            **redis,
            **{name: uwsgi for name in self.instance_names},
            "nginx": [
                _find("nginx") or "nginx",
                "-p",
                str(self.state_dir),
                "-c",
                str(self.state_dir / "nginx.conf"),
                "-e",
                str(self.state_dir / "nginx-error.log"),
                "-g",
                "daemon off;",
            ],
        }

    def _redis_command(self) -> list[str]:
        """redis-server on a unix socket only (no TCP port), owner-only, keeping nothing on
        disk: the throttle buckets and revocations it holds are for the stack's lifetime."""
        return [
            _find("redis-server") or "redis-server",
            "--port", "0",
            "--unixsocket", str(self.redis_socket),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.state_dir),
            "--daemonize", "no",
        ]  # fmt: skip

    def environment(self, instance: str | None = None) -> dict[str, str]:
        """The environment of a program: an instance's (by name) has its socket, the shared
        REDIS_URL and its own ``instance_env``; the others get the first instance's."""
        instance = instance or self.instance_names[0]
        env = {
            **os.environ,
            "AUTH_SERVICE_SOCKET": str(self.socket_of(instance)),
            "AUTH_SERVICE_CONFIG_DIR": str(self.config_dir),
        }
        if self.shared_redis_url:
            env["AUTH_SERVICE_REDIS_URL"] = self.shared_redis_url
        env |= self.extra_env | self.instance_env.get(instance, {})
        if sys.prefix != sys.base_prefix:
            env["UWSGI_VIRTUALENV"] = sys.prefix  # pip's uWSGI doesn't find a venv by itself
        return env

    def start(self, timeout: float = 30.0) -> None:
        """Start registry, uWSGI and nginx, in that order, each ready before the next."""
        self.write_configs()
        try:
            for name in self.commands():
                self._start_one(name, timeout)
        except BaseException:
            self.stop()
            raise

    def restart(self, name: str, timeout: float = 30.0) -> None:
        """Stop one program by its PID and start it again with freshly rendered configs: the
        registry after its certificate bundle (``cert_path``) changed, or uWSGI after the
        signing key did (both read them only at start-up). The others keep running."""
        stop_pid_file(self.pid_path(name), name, timeout, self.processes.pop(name, None))
        self.write_configs()
        self._start_one(name, timeout)

    def _start_one(self, name: str, timeout: float) -> None:
        """Start one program and wait until it is :meth:`ready`."""
        socket_path = self._sockets().get(name)
        if socket_path is not None:
            # A socket left by an earlier run would look ready before the program is.
            socket_path.unlink(missing_ok=True)
        self._spawn(name, self.commands()[name])
        self._wait_until(name, lambda: self.ready(name), timeout)

    def _sockets(self) -> dict[str, Path]:
        sockets = {"registry": self.registry_socket, "redis": self.redis_socket}
        return sockets | {instance: self.socket_of(instance) for instance in self.instance_names}

    def ready(self, name: str) -> bool:
        """Whether the program ``name`` serves: the registry's and Redis's sockets exist, an
        instance answers a request on its socket, nginx's port is open."""
        if name in self.instance_names:
            # uWSGI binds its socket before it loads the app, and its master ignores SIGTERM
            # until then: an instance stopped right after it is "ready" would take a SIGKILL.
            return _uwsgi_answers(self.socket_of(name))
        socket_path = self._sockets().get(name)
        if socket_path is not None:
            return socket_path.exists()
        return _port_open(self.port)

    def _spawn(self, name: str, command: Sequence[str]) -> None:
        log = open(self.log_path(name), "ab")  # noqa: SIM115 (owned by the child from here on)
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self.environment(name if name in self.instance_names else None),
                start_new_session=True,
            )
        except FileNotFoundError:
            raise StackError(
                f"{command[0]}: not installed (python3 -m auth_service.stack install)"
            ) from None
        finally:
            log.close()
        self.processes[name] = process
        self.pid_path(name).write_text(f"{process.pid}\n")

    def _wait_until(self, name: str, check, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        process = self.processes[name]
        while not check():
            if process.poll() is not None:
                tail = self.log_path(name).read_text(errors="replace")[-2000:]
                raise StackError(f"{name} exited with {process.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise StackError(
                    f"{name} not ready after {timeout:.0f}s; see {self.log_path(name)}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop what this stack started (by PID file), nginx first, and wait for it."""
        for name in ("nginx", *self.instance_names, "redis", "registry"):
            stop_pid_file(self.pid_path(name), name, timeout, self.processes.pop(name, None))


def _uwsgi_answers(path: Path) -> bool:
    """Whether uWSGI's socket at ``path`` answers a GET /health with any HTTP status."""
    from auth_service.cli.healthcheck import HEALTH_REQUEST, uwsgi_packet

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(5.0)
            connection.connect(str(path))
            connection.sendall(uwsgi_packet(HEALTH_REQUEST))
            return connection.recv(16).startswith(b"HTTP/")
    except OSError:
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _running_pid(pid_path: Path, name: str) -> int | None:
    """The PID in ``pid_path`` if that process is alive and still the program we started."""
    try:
        pid = int(pid_path.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if _program(name).encode() in cmdline and _alive(pid) else None


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie has exited, though its /proc entry stays until its parent
    (the init of a container may never) collects it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _program(name: str) -> str:
    """What the command line of the program called ``name`` holds: each instance is uWSGI."""
    if name.startswith("uwsgi"):
        return "uwsgi"
    return {"registry": "docker-registry", "redis": "redis-server"}.get(name, name)


def stop_pid_file(
    pid_path: Path, name: str, timeout: float, process: subprocess.Popen | None = None
) -> None:
    """SIGTERM the process named in ``pid_path``, SIGKILL it after ``timeout``, remove the file."""
    pid = process.pid if process is not None else _running_pid(pid_path, name)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pid = None
    deadline = time.monotonic() + timeout
    while pid is not None and time.monotonic() < deadline:
        if process is not None:
            if process.poll() is not None:
                break
        elif not _alive(pid):
            break
        time.sleep(0.05)
    else:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            if process is not None:
                process.wait(5)
    pid_path.unlink(missing_ok=True)


# --- commands ---------------------------------------------------------------------------------


def _local_stack(
    port: int, auth_mode: str = TOKEN_MODE, instances: int = 1, redis: str | None = None
) -> Stack:
    from auth_service.files.settings import config_dir_from_env

    stack = Stack.for_config_dir(LOCAL_STATE, (REPO / config_dir_from_env()).resolve(), port)
    stack.auth_mode = auth_mode
    stack.instances = instances
    stack.own_redis = redis == OWN_REDIS
    stack.redis_url = None if redis in (None, OWN_REDIS) else redis
    return stack


def _running_mode() -> str | None:
    """The auth mode the local stack's site was rendered for, if it was."""
    try:
        site = (LOCAL_STATE / "site.conf").read_text()
    except OSError:
        return None
    return PROXY_MODE if "include auth-proxy.conf;" in site else TOKEN_MODE


def _local_names() -> list[str]:
    """The local stack's programs in the order they start: the instances and the Redis server
    `up` wrote PID files for, else the three of the default stack."""
    instances = sorted((path.stem for path in LOCAL_STATE.glob("uwsgi*.pid")), key=_instance_number)
    redis = ["redis"] if (LOCAL_STATE / "redis.pid").exists() else []
    return ["registry", *redis, *(instances or ["uwsgi"]), "nginx"]


def _instance_number(name: str) -> int:
    """1 for `uwsgi-1`, ...; 0 for the single instance's `uwsgi`."""
    _, _, number = name.partition("-")
    return int(number) if number.isdigit() else 0


def _running(names: Sequence[str]) -> dict[str, int]:
    found = {name: _running_pid(LOCAL_STATE / f"{name}.pid", name) for name in names}
    return {name: pid for name, pid in found.items() if pid is not None}


def _token_service_line(stack: Stack) -> str:
    """How the usage message names the token service: one instance, or several and their
    shared state."""
    if stack.instances == 1 and not stack.shared_redis_url:
        return f"token service (uWSGI, {stack.config_dir})"
    if stack.own_redis:
        shared = f"redis-server on {stack.redis_socket}"
    elif stack.redis_url:
        from auth_service.shared.connection import shown_url

        shared = shown_url(stack.redis_url)  # without its password
    else:
        shared = "none: each instance throttles alone (add --redis)"
    return (
        f"token service ({stack.instances} uWSGI instance{'s' if stack.instances > 1 else ''}, "
        f"{stack.config_dir})\n  shared state: {shared}"
    )


def command_up(
    port: int, auth_mode: str = TOKEN_MODE, instances: int = 1, redis: str | None = None
) -> None:
    """Start the local stack: ``instances`` token-service instances, and ``redis`` None (no
    shared state), OWN_REDIS (a redis-server of the stack's own) or a REDIS_URL."""
    from auth_service.cli.dev import create_example_config
    from auth_service.files.settings import config_dir_from_env

    names = _local_names()
    running = _running(names)
    if len(running) == len(names):
        print(
            f"already running in {_running_mode()} mode "
            f"({', '.join(f'{n} {p}' for n, p in running.items())}); "
            "`python3 -m auth_service.stack down` stops it"
        )
        return
    if running:  # a partial stack (one program died): start over cleanly
        command_down()
    for name in names:  # PID files of programs that are gone: the new stack writes its own
        (LOCAL_STATE / f"{name}.pid").unlink(missing_ok=True)
    config_dir = REPO / config_dir_from_env()
    create_example_config(config_dir)
    stack = _local_stack(port, auth_mode, instances, redis)
    stack.start()
    token_service = _token_service_line(stack)
    if auth_mode == PROXY_MODE:
        print(f"""
The stack is up on {stack.url} in proxy mode (state and logs in {LOCAL_STATE}):
  registry (Debian docker-registry, token auth) <- nginx -> {token_service}
  nginx asks the token service about each request and hands the registry a token: Basic
  credentials work directly, and clients that fetch tokens themselves still do.

Try it with the user passwords printed when the config was created:
  curl -u alice:PASSWORD {stack.url}/v2/
  curl -u alice:PASSWORD {stack.url}/v2/alice/app/tags/list
  skopeo copy --dest-creds alice:PASSWORD --dest-tls-verify=false \\
      docker://docker.io/library/alpine:latest docker://{stack.host}/alice/app:1
  docker login {stack.host} -u alice
  docker push {stack.host}/alice/app:1

Stop it with: python3 -m auth_service.stack down""")
        return
    print(f"""
The stack is up on {stack.url} (state and logs in {LOCAL_STATE}):
  registry (Debian docker-registry) <- nginx -> {token_service}

Try it with the user passwords printed when the config was created:
  docker login {stack.host} -u alice
  docker tag SOME-IMAGE {stack.host}/alice/app:1
  docker push {stack.host}/alice/app:1
  docker pull {stack.host}/alice/app:1
  curl -u alice:PASSWORD '{stack.realm}?service={stack.service}&scope=repository:alice/app:pull'

Stop it with: python3 -m auth_service.stack down""")


def command_down() -> None:
    """Stop every program the local stack started, by its PID file, nginx first."""
    names = _local_names()
    for name in ["nginx", *(name for name in reversed(names) if name != "nginx")]:
        pid = _running_pid(LOCAL_STATE / f"{name}.pid", name)
        stop_pid_file(LOCAL_STATE / f"{name}.pid", name, 15.0)
        print(f"stopped {name} ({pid})" if pid else f"{name} was not running")


def command_status() -> int:
    """Print each program of the local stack, every instance and Redis included; 3 unless all
    of them run."""
    names = _local_names()
    running = _running(names)
    for name in names:
        print(f"{name}: {'running, pid ' + str(running[name]) if name in running else 'stopped'}")
    if running:
        print(f"mode: {_running_mode()}")
    return 0 if len(running) == len(names) else 3


def _instance_count(text: str) -> int:
    """argparse's type for --instances: 1 to MAX_INSTANCES."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_INSTANCES:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_INSTANCES}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m auth_service.stack",
        description="Run the registry, the token service and nginx locally, or the tests.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="install what is missing and start the stack")
    up.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port on 127.0.0.1 for nginx (default {DEFAULT_PORT})",
    )
    up.add_argument(
        "--proxy",
        action="store_true",
        help="proxy mode: nginx asks the token service about each registry request, so Basic "
        "credentials work straight against the registry (tokens still do)",
    )
    up.add_argument(
        "--instances",
        type=_instance_count,
        default=1,
        metavar="N",
        help="token-service instances behind nginx, each its own uWSGI (default 1)",
    )
    shared = up.add_mutually_exclusive_group()
    shared.add_argument(
        "--redis",
        dest="redis",
        action="store_const",
        const=OWN_REDIS,
        help="keep the instances' shared state (throttling, revocations) in a redis-server the "
        "stack starts and stops",
    )
    shared.add_argument(
        "--redis-url",
        dest="redis",
        metavar="URL",
        help="keep it in your Redis server instead (REDIS_URL, e.g. redis://127.0.0.1:6379/0)",
    )
    commands.add_parser("down", help="stop the processes `up` started")
    commands.add_parser("status", help="show what is running")
    install = commands.add_parser("install", help="install what `up` needs, and no more")
    install.add_argument("--test", action="store_true", help="also what the tests need")
    test = commands.add_parser("test", help="install what the tests need and run pytest")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed to pytest")
    args = parser.parse_args(argv)

    try:
        if args.command == "install":
            ensure_debian_packages(TEST_PACKAGES if args.test else STACK_PACKAGES)
            if args.test:
                ensure_debian_12_kubectl()
            ensure_venv()
            return 0
        if args.command in ("up", "test") and not in_venv():
            if args.command == "test":
                ensure_debian_packages(TEST_PACKAGES)
                ensure_debian_12_kubectl()
            elif args.redis == OWN_REDIS:
                ensure_debian_packages({**STACK_PACKAGES, **REDIS_PACKAGES})
            else:
                ensure_debian_packages(STACK_PACKAGES)
            python = ensure_venv()
            # Continue in the environment that has the project's dependencies.
            os.execv(
                python,
                [
                    str(python),
                    "-m",
                    "auth_service.stack",
                    *(argv if argv is not None else sys.argv[1:]),
                ],
            )
        if args.command == "up":
            mode = PROXY_MODE if args.proxy else TOKEN_MODE
            command_up(args.port, mode, instances=args.instances, redis=args.redis)
        elif args.command == "down":
            command_down()
        elif args.command == "status":
            return command_status()
        elif args.command == "test":
            os.chdir(REPO)
            return subprocess.call([sys.executable, "-m", "pytest", *args.pytest_args])
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
