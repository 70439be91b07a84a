"""The whole stack on one machine: Debian's docker-registry, uWSGI and nginx, on 127.0.0.1.

    python3 -m auth_service.stack up [--port 5000] [--proxy]
                                                      install what is missing, start, show usage;
                                                      --proxy: proxy mode (Basic credentials
                                                      straight to the registry, nginx swaps them
                                                      for a token on each request)
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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv"
LOCAL_STATE = REPO / ".stack"
DEFAULT_PORT = 5000
SYSTEM_NGINX_DIR = Path("/etc/nginx")
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
}
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
    def auth_socket(self) -> Path:
        return self.state_dir / "auth.sock"

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
                "AUTH_SERVERS": f"server unix:{self.auth_socket};",
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
        uwsgi = Path(sys.executable).parent / "uwsgi"
        return {
            "registry": [
                _find("docker-registry") or "docker-registry",
                "serve",
                str(self.state_dir / "registry.yml"),
            ],
            "uwsgi": [str(uwsgi), "--ini", str(REPO / "uwsgi.ini"), *self.uwsgi_options],
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

    def environment(self) -> dict[str, str]:
        env = {
            **os.environ,
            "AUTH_SERVICE_SOCKET": str(self.auth_socket),
            "AUTH_SERVICE_CONFIG_DIR": str(self.config_dir),
            **self.extra_env,
        }
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
        """Start one program and wait until it is ready: its socket exists, or nginx's port."""
        sockets = {"registry": self.registry_socket, "uwsgi": self.auth_socket}
        if name in sockets:
            # A socket left by an earlier run would look ready before the program is.
            sockets[name].unlink(missing_ok=True)
            ready = sockets[name].exists
        else:
            ready = lambda: _port_open(self.port)  # noqa: E731
        self._spawn(name, self.commands()[name])
        self._wait_until(name, ready, timeout)

    def _spawn(self, name: str, command: Sequence[str]) -> None:
        log = open(self.log_path(name), "ab")  # noqa: SIM115 (owned by the child from here on)
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=self.environment(),
            start_new_session=True,
        )
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
        for name in ("nginx", "uwsgi", "registry"):
            stop_pid_file(self.pid_path(name), name, timeout, self.processes.pop(name, None))


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
    program = {"registry": b"docker-registry"}.get(name, name.encode())
    return pid if program in cmdline else None


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
        elif not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.05)
    else:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            if process is not None:
                process.wait(5)
    pid_path.unlink(missing_ok=True)


# --- commands ---------------------------------------------------------------------------------


def _local_stack(port: int, auth_mode: str = TOKEN_MODE) -> Stack:
    from auth_service.files.settings import config_dir_from_env

    stack = Stack.for_config_dir(LOCAL_STATE, (REPO / config_dir_from_env()).resolve(), port)
    stack.auth_mode = auth_mode
    return stack


def _running_mode() -> str | None:
    """The auth mode the local stack's site was rendered for, if it was."""
    try:
        site = (LOCAL_STATE / "site.conf").read_text()
    except OSError:
        return None
    return PROXY_MODE if "include auth-proxy.conf;" in site else TOKEN_MODE


def _running(names: Sequence[str] = ("registry", "uwsgi", "nginx")) -> dict[str, int]:
    found = {name: _running_pid(LOCAL_STATE / f"{name}.pid", name) for name in names}
    return {name: pid for name, pid in found.items() if pid is not None}


def command_up(port: int, auth_mode: str = TOKEN_MODE) -> None:
    from auth_service.cli.dev import create_example_config
    from auth_service.files.settings import config_dir_from_env

    running = _running()
    if len(running) == 3:
        print(
            f"already running in {_running_mode()} mode "
            f"({', '.join(f'{n} {p}' for n, p in running.items())}); "
            "`python3 -m auth_service.stack down` stops it"
        )
        return
    if running:  # a partial stack (one program died): start over cleanly
        command_down()
    config_dir = REPO / config_dir_from_env()
    create_example_config(config_dir)
    stack = _local_stack(port, auth_mode)
    stack.start()
    if auth_mode == PROXY_MODE:
        print(f"""
The stack is up on {stack.url} in proxy mode (state and logs in {LOCAL_STATE}):
  registry (Debian docker-registry, token auth) <- nginx -> token service (uWSGI, {config_dir})
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
  registry (Debian docker-registry) <- nginx -> token service (uWSGI, {config_dir})

Try it with the user passwords printed when the config was created:
  docker login {stack.host} -u alice
  docker tag SOME-IMAGE {stack.host}/alice/app:1
  docker push {stack.host}/alice/app:1
  docker pull {stack.host}/alice/app:1
  curl -u alice:PASSWORD '{stack.realm}?service={stack.service}&scope=repository:alice/app:pull'

Stop it with: python3 -m auth_service.stack down""")


def command_down() -> None:
    for name in ("nginx", "uwsgi", "registry"):
        pid = _running_pid(LOCAL_STATE / f"{name}.pid", name)
        stop_pid_file(LOCAL_STATE / f"{name}.pid", name, 15.0)
        print(f"stopped {name} ({pid})" if pid else f"{name} was not running")


def command_status() -> int:
    running = _running()
    for name in ("registry", "uwsgi", "nginx"):
        print(f"{name}: {'running, pid ' + str(running[name]) if name in running else 'stopped'}")
    if running:
        print(f"mode: {_running_mode()}")
    return 0 if len(running) == 3 else 3


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
            ensure_venv()
            return 0
        if args.command in ("up", "test") and not in_venv():
            ensure_debian_packages(TEST_PACKAGES if args.command == "test" else STACK_PACKAGES)
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
            command_up(args.port, PROXY_MODE if args.proxy else TOKEN_MODE)
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
