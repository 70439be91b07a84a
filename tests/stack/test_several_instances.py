"""Several token-service instances and Redis in the stack: what is rendered, each instance's
environment, and `up --instances N --redis`, `status`, `down` on real programs."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from auth_service.stack import main as stack_main
from auth_service.stack.main import NGINX_INCLUDES, OWN_REDIS, Stack, StackError, free_port

NGINX = shutil.which("nginx", path="/usr/sbin:/usr/bin")


def make_stack(tmp_path: Path, **options) -> Stack:
    stack = Stack(tmp_path / "state", tmp_path / "config", 5999, "iss", "svc", tmp_path / "t.crt")
    for name, value in options.items():
        setattr(stack, name, value)
    return stack


def upstream_servers(site: str) -> list[str]:
    block = re.search(r"upstream token_service \{(.*?)\}", site, re.S)
    assert block, site
    return re.findall(r"server (\S+);", block.group(1))


def test_one_instance_keeps_the_names_it_always_had(tmp_path):
    stack = make_stack(tmp_path)
    stack.write_configs()
    assert stack.instance_names == ["uwsgi"]
    assert stack.auth_socket == stack.state_dir / "auth.sock"
    site = (stack.state_dir / "site.conf").read_text()
    assert upstream_servers(site) == [f"unix:{stack.state_dir / 'auth.sock'}"]
    assert list(stack.commands()) == ["registry", "uwsgi", "nginx"]
    assert "AUTH_SERVICE_REDIS_URL" not in stack.environment()


def test_each_instance_is_a_server_of_the_upstream_with_its_own_socket(tmp_path):
    stack = make_stack(tmp_path, instances=3)
    stack.write_configs()
    names = ["uwsgi-1", "uwsgi-2", "uwsgi-3"]
    assert stack.instance_names == names
    sockets = [stack.state_dir / f"auth-{n}.sock" for n in (1, 2, 3)]
    assert [stack.socket_of(name) for name in names] == sockets
    site = (stack.state_dir / "site.conf").read_text()
    assert upstream_servers(site) == [f"unix:{socket}" for socket in sockets]
    assert list(stack.commands()) == ["registry", *names, "nginx"]
    for name, socket in zip(names, sockets, strict=True):
        assert stack.environment(name)["AUTH_SERVICE_SOCKET"] == str(socket)
    with pytest.raises(StackError, match="no instance 'uwsgi'"):
        stack.socket_of("uwsgi")


def test_an_instance_gets_its_own_settings_over_the_shared_ones(tmp_path):
    stack = make_stack(
        tmp_path,
        instances=2,
        redis_url="redis://127.0.0.1:6390/0",
        extra_env={"AUTH_SERVICE_LOGIN_THROTTLE_BURST": "5"},
        instance_env={"uwsgi-2": {"AUTH_SERVICE_CONFIG_DIR": "/elsewhere"}},
    )
    first, second = stack.environment("uwsgi-1"), stack.environment("uwsgi-2")
    assert first["AUTH_SERVICE_CONFIG_DIR"] == str(stack.config_dir)
    assert second["AUTH_SERVICE_CONFIG_DIR"] == "/elsewhere"
    for env in (first, second):
        assert env["AUTH_SERVICE_REDIS_URL"] == "redis://127.0.0.1:6390/0"
        assert env["AUTH_SERVICE_LOGIN_THROTTLE_BURST"] == "5"


def test_the_stacks_own_redis_starts_before_the_instances_on_a_private_socket(tmp_path):
    stack = make_stack(tmp_path, instances=2, own_redis=True)
    commands = stack.commands()
    assert list(commands) == ["registry", "redis", "uwsgi-1", "uwsgi-2", "nginx"]
    redis = commands["redis"]
    assert Path(redis[0]).name == "redis-server"
    assert redis[redis.index("--port") + 1] == "0"  # no TCP port
    assert redis[redis.index("--unixsocket") + 1] == str(stack.redis_socket)
    url = f"unix://{stack.state_dir / 'redis.sock'}"
    assert stack.environment("uwsgi-2")["AUTH_SERVICE_REDIS_URL"] == url


def test_own_redis_and_a_redis_url_exclude_each_other(tmp_path):
    with pytest.raises(StackError, match="not both"):
        make_stack(tmp_path, own_redis=True, redis_url="redis://x").write_configs()
    with pytest.raises(StackError, match="at least 1"):
        make_stack(tmp_path, instances=0).write_configs()


def test_token_requests_go_to_the_next_instance_on_connection_errors_only(tmp_path):
    stack = make_stack(tmp_path, instances=2)
    stack.write_configs()
    site = (stack.state_dir / "site.conf").read_text()
    included = "".join((stack.state_dir / name).read_text() for name in NGINX_INCLUDES)
    directive = re.compile(r"(?m)^(\s*)uwsgi_next_upstream\s+([^;]*);")
    # Once, at server level, and in no include: every location that passes to the token
    # service inherits it, proxy mode's /auth/proxy included. Never on an answer (http_503).
    assert directive.findall(site) == [("    ", "error timeout non_idempotent")]
    assert directive.findall(included) == []


@pytest.mark.skipif(NGINX is None, reason="no nginx")
@pytest.mark.parametrize("mode", ["token", "proxy"])
def test_nginx_accepts_the_site_with_three_instances(tmp_path, mode):
    stack = make_stack(tmp_path, instances=3, auth_mode=mode)
    stack.write_configs()
    result = subprocess.run(
        [NGINX, "-t", "-p", str(stack.state_dir), "-c", str(stack.state_dir / "nginx.conf"),
         "-e", str(stack.state_dir / "error.log")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_up_takes_instances_and_redis(monkeypatch, capsys):
    started = []
    monkeypatch.setattr(stack_main, "in_venv", lambda: True)
    monkeypatch.setattr(
        stack_main, "command_up", lambda port, mode, **options: started.append(options)
    )
    assert stack_main.main(["up", "--instances", "3", "--redis"]) == 0
    assert stack_main.main(["up", "--redis-url", "redis://127.0.0.1:6379/1"]) == 0
    assert stack_main.main(["up"]) == 0
    assert started == [
        {"instances": 3, "redis": OWN_REDIS},
        {"instances": 1, "redis": "redis://127.0.0.1:6379/1"},
        {"instances": 1, "redis": None},
    ]
    for wrong in (["--instances", "0"], ["--instances", "x"], ["--redis", "--redis-url", "u"]):
        with pytest.raises(SystemExit) as exited:
            stack_main.main(["up", *wrong])
        assert exited.value.code == 2
    assert len(started) == 3
    assert "--instances" in capsys.readouterr().err


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def local_command(state: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    """``python3 -m auth_service.stack ARGS`` with its state in ``state``, not ``.stack``: a
    process of its own that exits, as when an operator runs it. It runs in this interpreter's
    environment, as if in `.venv` (where `up` would otherwise re-run itself, in `.stack`)."""
    script = (
        "import sys; from pathlib import Path; from auth_service.stack import main as m; "
        "m.LOCAL_STATE = Path(sys.argv[1]); m.in_venv = lambda: True; "
        "sys.exit(m.main(sys.argv[2:]))"
    )
    return subprocess.run(
        [sys.executable, "-c", script, str(state), *args],
        env={**os.environ, "AUTH_SERVICE_CONFIG_DIR": str(config)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_up_status_down_run_and_stop_every_instance_and_redis(tmp_path):
    """The local commands on real programs (nginx, docker-registry, two uWSGI, redis-server),
    in a state directory of this test's own."""
    state, config, pids = tmp_path / "state", tmp_path / "config", {}
    names = ["registry", "redis", "uwsgi-1", "uwsgi-2", "nginx"]
    try:
        up = local_command(state, config, "up", "--port", str(free_port()),
                           "--instances", "2", "--redis")  # fmt: skip
        assert up.returncode == 0, up.stderr
        assert "2 uWSGI instances" in up.stdout
        assert f"redis-server on {state / 'redis.sock'}" in up.stdout
        pids = {name: int((state / f"{name}.pid").read_text()) for name in names}
        assert all(_alive(pid) for pid in pids.values())

        status = local_command(state, config, "status")
        assert status.returncode == 0, status.stdout
        lines = status.stdout.splitlines()
        assert lines[:5] == [f"{name}: running, pid {pids[name]}" for name in names]

        # One instance killed, master and workers: status says which, and fails.
        master = pids["uwsgi-2"]
        workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        for pid in [master, *map(int, workers)]:
            os.kill(pid, signal.SIGKILL)
        status = local_command(state, config, "status")
        assert status.returncode == 3
        assert "uwsgi-2: stopped" in status.stdout and "uwsgi-1: running" in status.stdout
    finally:
        down = local_command(state, config, "down")
    assert down.returncode == 0, down.stderr
    assert "stopped redis" in down.stdout and "stopped uwsgi-1" in down.stdout
    assert not list(state.glob("*.pid"))
    assert pids and not any(_alive(pid) for pid in pids.values())


def test_the_test_set_up_installs_redis_and_kubectl_and_keeps_redis_stopped():
    """CI installs from `install --test` alone: Redis for tests/e2e/test_instances.py, kubectl
    for the Kubernetes manifests; Debian's redis-server service must not run beside them."""
    assert stack_main.TEST_PACKAGES["redis-server"] == "redis-server"
    assert stack_main.TEST_PACKAGES["kubectl"] == "kubernetes-client"
    assert stack_main.KEEP_STOPPED_SERVICES == {"redis-server": "redis-server"}


def test_the_usage_message_names_the_shared_state_without_its_password(tmp_path):
    shown = stack_main._token_service_line(
        make_stack(tmp_path, instances=2, redis_url="redis://:s3cret-pw@redis.internal:6379/0")
    )
    assert "2 uWSGI instances" in shown and "redis.internal:6379" in shown
    assert "s3cret-pw" not in shown
    alone = stack_main._token_service_line(make_stack(tmp_path, instances=3))
    assert "each instance throttles alone" in alone
    assert stack_main._token_service_line(make_stack(tmp_path)).startswith("token service (uWSGI")
