"""/auth/health, /auth/metrics and the container's healthcheck, through nginx and uWSGI."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from auth_service.stack.main import REPO

from .. import helpers
from .conftest import SERVICE, basic_auth, http, wait_for_reload


def metric(stack, name: str, **labels: str) -> float:
    status, _, body = http("GET", f"{stack.url}/auth/metrics")
    assert status == 200, body
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def wait_for_metrics() -> None:
    """Every worker writes its counts at most a second after it made them."""
    time.sleep(1.5)


def healthcheck(path: Path | str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "auth_service.cli.healthcheck", *options, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_health_through_nginx(stack):
    status, headers, body = http("GET", f"{stack.url}/auth/health")
    assert status == 200, body
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "no-store"
    assert json.loads(body) == {
        "status": "ok",
        "checks": {"config_loaded": True, "key_usable": True, "last_reload_ok": True},
        "problems": [],
    }


def test_metrics_from_loopback(stack):
    status, headers, body = http("GET", f"{stack.url}/auth/metrics")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    for name in ("auth_token_requests_total", "auth_token_request_duration_seconds_bucket"):
        assert f"# TYPE {name.removesuffix('_bucket')}" in text, name


def test_only_the_two_endpoints_are_published(stack):
    for path in ("/health", "/metrics", "/auth/health/x", "/auth/metricsx", "/v2/health"):
        status, _, _ = http("GET", f"{stack.url}{path}")
        assert status in (401, 404), path  # /v2/... is the registry's 401


def test_issued_tokens_are_counted_once_whichever_worker_served_them(stack):
    """Two uWSGI workers: a per-worker counter would show about half. The sum is exact."""
    requests = 40
    wait_for_metrics()  # what earlier tests counted is written before the count starts
    before = metric(stack, "auth_token_requests_total", outcome="issued")
    url = f"{stack.realm}?service={SERVICE}&scope=repository:team/app:pull"

    def fetch(_: int) -> int:
        return http("GET", url, basic_auth("alice"))[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(fetch, range(requests)))
    assert statuses == [200] * requests
    wait_for_metrics()
    assert metric(stack, "auth_token_requests_total", outcome="issued") == before + requests
    # Both workers counted, each in its own file (and the master's, from before the fork).
    directory = Path(f"{stack.auth_socket}.metrics")
    pids = {path.stem.rsplit("_", 1)[1] for path in directory.glob("counter_*.db")}
    assert len(pids) >= 3, pids


def test_a_failed_reload_shows_in_health_and_metrics(stack):
    users = stack.config_dir / "users.json"
    original = users.read_bytes()
    failed = metric(stack, "auth_config_reloads_total", result="failed")
    try:
        helpers.write_json(users, {"alice": {"pass_hash": "not-bcrypt"}})
        wait_for_reload()
        status, _, body = http("GET", f"{stack.url}/auth/health")
        assert status == 503, body
        assert json.loads(body)["checks"]["last_reload_ok"] is False
        result = healthcheck(stack.auth_socket)
        assert result.returncode == 1
        assert "503" in result.stderr and "last reload" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        # Kubernetes' probes (deploy/kubernetes): the last good users.json serves every request,
        # so the pod stays ready and alive.
        for option in ("--ready", "--live"):
            result = healthcheck(stack.auth_socket, option)
            assert (result.returncode, result.stderr) == (0, ""), option
        # Each worker that looked counted its failure once.
        wait_for_metrics()
        assert metric(stack, "auth_config_reloads_total", result="failed") > failed
    finally:
        users.write_bytes(original)
        wait_for_reload()
    # Every worker must have reloaded the good file: ask more often than there are workers.
    for _ in range(6):
        assert http("GET", f"{stack.url}/auth/health")[0] == 200


def test_healthcheck_client_against_the_real_uwsgi(stack):
    for options in ((), ("--live",), ("--ready",)):
        result = healthcheck(stack.auth_socket, *options)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""


@pytest.mark.parametrize(
    ("option", "prefix"),
    [((), "unhealthy: "), (("--live",), "not live: "), (("--ready",), "not ready: ")],
)
def test_healthcheck_client_without_a_server(tmp_path, option, prefix):
    result = healthcheck(tmp_path / "nothing.sock", *option)
    assert result.returncode == 1
    assert result.stderr.startswith(prefix)
    assert len(result.stderr.strip().splitlines()) == 1


def _answer_once(path: Path, answer: bytes) -> threading.Thread:
    """A socket at ``path`` that answers one request with ``answer``."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        with listener:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


UNAVAILABLE = "503 SERVICE UNAVAILABLE"


def _health_answer(status: str, checks: dict[str, bool]) -> bytes:
    body = json.dumps({"status": "failing", "checks": checks, "problems": ["a problem"]})
    return f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\r\n{body}".encode()


@pytest.mark.parametrize(
    ("answer", "ready"),
    [
        # Only the last reload failed: the last good files serve every request.
        (_health_answer(UNAVAILABLE, {"key_usable": True, "last_reload_ok": False}), True),
        # The certificate expired: tokens the registry refuses.
        (_health_answer(UNAVAILABLE, {"key_usable": False, "last_reload_ok": True}), False),
        (_health_answer(UNAVAILABLE, {"key_usable": False, "last_reload_ok": False}), False),
        # A 503 that doesn't say which check failed, or not /health's at all.
        (b"HTTP/1.1 503 SERVICE UNAVAILABLE\r\n\r\nbusy", False),
        (_health_answer("500 INTERNAL SERVER ERROR", {"last_reload_ok": False}), False),
    ],
    ids=["failed reload", "expired certificate", "both", "no checks", "a 500"],
)
def test_healthcheck_ready_and_live_on_a_failing_health(tmp_path, answer, ready):
    """Readiness tolerates only a failed reload; liveness any answer at all. (uWSGI's real
    answer for a failed reload is in test_a_failed_reload_shows_in_health_and_metrics: a
    certificate expiring while the service runs can't be made here.)"""
    path = tmp_path / "token.sock"
    for option, passes in (("--ready", ready), ("--live", True)):
        path.unlink(missing_ok=True)
        server = _answer_once(path, answer)
        result = healthcheck(path, option)
        server.join(10)
        assert result.returncode == (0 if passes else 1), (option, result.stderr)


def test_healthcheck_client_against_a_socket_that_answers_nothing(tmp_path):
    path = tmp_path / "mute.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen(1)

        def accept_and_hang_up() -> None:
            connection, _ = listener.accept()
            connection.recv(4096)
            connection.close()

        thread = threading.Thread(target=accept_and_hang_up, daemon=True)
        thread.start()
        result = healthcheck(path)
        thread.join(10)
    assert result.returncode == 1
    assert "no HTTP response" in result.stderr
