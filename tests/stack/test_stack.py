"""The stack runner's own logic: templates, rendered configs, and stopping only what it started."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from auth_service.stack.main import REPO, Stack, StackError, render_template, stop_pid_file


def test_render_template_fills_every_placeholder():
    assert render_template("a ${X} $host ${Y}", {"X": "1", "Y": "2"}) == "a 1 $host 2"


def test_render_template_refuses_missing_values():
    with pytest.raises(StackError, match="no value for Y"):
        render_template("${X} ${Y}", {"X": "1"})


def test_rendered_configs(tmp_path):
    stack = Stack(
        tmp_path / "state", tmp_path / "config", 5999, "iss", "svc", tmp_path / "token.crt"
    )
    stack.write_configs()
    site = (stack.state_dir / "site.conf").read_text()
    assert "listen 127.0.0.1:5999;" in site
    assert f"server unix:{stack.auth_socket};" in site
    assert f"server unix:{stack.registry_socket};" in site
    assert "location = /v2/token {" in site and "location /v2/ {" in site
    assert "${" not in site
    main = (stack.state_dir / "nginx.conf").read_text()
    assert f"include {stack.state_dir / 'site.conf'};" in main
    registry = json.loads((stack.state_dir / "registry.yml").read_text())
    assert registry["auth"]["token"] == {
        "realm": "http://127.0.0.1:5999/v2/token",
        "service": "svc",
        "issuer": "iss",
        "rootcertbundle": str(tmp_path / "token.crt"),
    }
    assert registry["http"]["addr"] == str(stack.registry_socket)


def test_site_template_is_the_one_in_the_repository():
    template = (REPO / "nginx" / "registry.conf.template").read_text()
    assert 'uwsgi_param HTTP_TRANSFER_ENCODING "";' in template


def test_stop_leaves_a_process_that_is_not_ours(tmp_path):
    """A stale PID file whose PID now belongs to another program must not kill it."""
    other = subprocess.Popen(["sleep", "30"])
    try:
        pid_file = tmp_path / "nginx.pid"
        pid_file.write_text(f"{other.pid}\n")
        stop_pid_file(pid_file, "nginx", timeout=1)
        assert other.poll() is None
        assert not pid_file.exists()
    finally:
        other.kill()
        other.wait()


class _StandInStack(Stack):
    """Registry and uWSGI replaced by a script that writes its PID into its socket path after a
    moment and waits to be stopped (without removing the file, as a killed program would)."""

    def commands(self):
        script = (
            "import os, pathlib, sys, time; time.sleep(0.3); "
            "pathlib.Path(sys.argv[1]).write_text(str(os.getpid())); time.sleep(60)"
        )
        return {
            name: [sys.executable, "-c", script, str(socket)]
            for name, socket in (("registry", self.registry_socket), ("uwsgi", self.auth_socket))
        }

    def ready(self, name):
        # Its "socket" is a file: there is no uWSGI to ask.
        return self.auth_socket.exists() if name == "uwsgi" else super().ready(name)


def test_restart_replaces_one_program_and_waits_for_its_new_socket(tmp_path):
    stack = _StandInStack(
        tmp_path / "state", tmp_path / "config", 5999, "iss", "svc", tmp_path / "token.crt"
    )
    stack.start()
    try:
        registry, uwsgi = stack.processes["registry"].pid, stack.processes["uwsgi"].pid
        stack.restart("uwsgi")
        restarted = stack.processes["uwsgi"].pid
        assert restarted != uwsgi and not Path(f"/proc/{uwsgi}").exists()
        assert stack.processes["registry"].pid == registry
        # Ready means the new program's socket, not the one the old program left behind.
        assert stack.auth_socket.read_text() == str(restarted)
        assert stack.pid_path("uwsgi").read_text() == f"{restarted}\n"
    finally:
        stack.stop()
