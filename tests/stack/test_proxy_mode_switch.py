"""The proxy-mode switch: one site template, one include chosen by AUTH_MODE, and `up --proxy`."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from auth_service.stack import main as stack_main
from auth_service.stack.main import NGINX_INCLUDES, PROXY_MODE, REPO, Stack, StackError


def rendered(tmp_path, mode: str) -> tuple[str, Stack]:
    stack = Stack(tmp_path / mode, tmp_path / "config", 5999, "iss", "svc", tmp_path / "token.crt")
    stack.auth_mode = mode
    stack.write_configs()
    return (stack.state_dir / "site.conf").read_text(), stack


def test_each_mode_renders_the_same_site_but_for_its_two_includes(tmp_path):
    token, token_stack = rendered(tmp_path, "token")
    proxy, proxy_stack = rendered(tmp_path, PROXY_MODE)
    proxy = proxy.replace(str(proxy_stack.state_dir), str(token_stack.state_dir))
    assert "include auth-token.conf;" in token and "include auth-token-locations.conf;" in token
    assert "include auth-proxy.conf;" in proxy and "include auth-proxy-locations.conf;" in proxy
    # Nothing else differs: the shared locations are written once, in the template.
    differing = [
        (a, b) for a, b in zip(token.splitlines(), proxy.splitlines(), strict=True) if a != b
    ]
    assert differing == [
        ("    include auth-token-locations.conf;", "    include auth-proxy-locations.conf;"),
        ("        include auth-token.conf;", "        include auth-proxy.conf;"),
    ]
    for name in NGINX_INCLUDES:  # beside nginx.conf, as in the nginx container
        assert (token_stack.state_dir / name).read_bytes() == (REPO / "nginx" / name).read_bytes()
    # Token mode adds no directive at all; the registry keeps token auth in both.
    for name in ("auth-token.conf", "auth-token-locations.conf"):
        lines = (REPO / "nginx" / name).read_text().splitlines()
        assert all(line.startswith("#") or not line.strip() for line in lines)
    registry = json.loads((tmp_path / PROXY_MODE / "registry.yml").read_text())
    assert registry["auth"]["token"]["realm"] == "http://127.0.0.1:5999/v2/token"


def test_proxy_mode_asks_the_decision_endpoint_and_replaces_the_password(tmp_path):
    proxy = (REPO / "nginx" / "auth-proxy.conf").read_text()
    assert "auth_request /auth/proxy;" in proxy
    assert "proxy_set_header Authorization $proxy_authorization;" in proxy
    locations = (REPO / "nginx" / "auth-proxy-locations.conf").read_text()
    assert "location = /auth/proxy {\n    internal;" in locations
    for status in (400, 401, 403, 429, 500, 503):
        assert f"location = /.proxy-refused/{status} {{" in locations
        assert f"return {status} $proxy_refusal_body;" in locations


@pytest.mark.skipif(shutil.which("nginx", path="/usr/sbin:/usr/bin") is None, reason="no nginx")
@pytest.mark.parametrize("mode", ["token", PROXY_MODE])
def test_nginx_accepts_both_modes(tmp_path, mode):
    _, stack = rendered(tmp_path, mode)
    result = subprocess.run(
        [shutil.which("nginx", path="/usr/sbin:/usr/bin"), "-t", "-p", str(stack.state_dir),
         "-c", str(stack.state_dir / "nginx.conf"), "-e", str(stack.state_dir / "error.log")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_an_unknown_mode_is_refused(tmp_path):
    with pytest.raises(StackError, match="auth mode"):
        rendered(tmp_path, "basic")


def test_up_takes_proxy(monkeypatch):
    started = []
    monkeypatch.setattr(stack_main, "in_venv", lambda: True)
    monkeypatch.setattr(
        stack_main, "command_up", lambda port, mode, **_: started.append((port, mode))
    )
    assert stack_main.main(["up", "--proxy", "--port", "5123"]) == 0
    assert stack_main.main(["up"]) == 0
    assert started == [(5123, PROXY_MODE), (5000, "token")]
