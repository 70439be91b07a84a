"""auth_service.records.metrics: the counters, the exposition, and the multiprocess directory."""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from auth_service.records import metrics
from auth_service.stack.main import REPO

METRIC_NAMES = (
    "auth_token_requests_total",
    "auth_token_request_duration_seconds_bucket",
    "auth_token_request_duration_seconds_count",
    "auth_token_request_duration_seconds_sum",
    "auth_actions_requested_total",
    "auth_actions_granted_total",
    "auth_bcrypt_checks_total",
    "auth_credential_cache_lookups_total",
    "auth_config_reloads_total",
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition: (name, sorted labels) → value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(name: str, **labels: str) -> float:
    """One sample of the current exposition; 0 when it is not there yet."""
    return samples(metrics.render().decode()).get((name, tuple(sorted(labels.items()))), 0.0)


def test_token_requests_by_outcome_and_latency():
    before = value("auth_token_requests_total", outcome="throttled")
    count = value("auth_token_request_duration_seconds_count")
    fast = value("auth_token_request_duration_seconds_bucket", le="0.001")
    metrics.observe_token_request("throttled", 0.0007)
    metrics.observe_token_request("throttled", 1.5)
    assert value("auth_token_requests_total", outcome="throttled") == before + 2
    assert value("auth_token_request_duration_seconds_count") == count + 2
    assert value("auth_token_request_duration_seconds_bucket", le="0.001") == fast + 1


@pytest.mark.parametrize("outcome", metrics.OUTCOMES)
def test_every_outcome_is_counted(outcome):
    before = value("auth_token_requests_total", outcome=outcome)
    metrics.observe_token_request(outcome, 0.01)
    assert value("auth_token_requests_total", outcome=outcome) == before + 1


def test_an_unknown_outcome_is_an_error_not_a_new_series():
    with pytest.raises(ValueError, match="unknown outcome 'isued'"):
        metrics.observe_token_request("isued", 0.01)
    assert ("auth_token_requests_total", (("outcome", "isued"),)) not in samples(
        metrics.render().decode()
    )


def test_buckets_span_half_a_millisecond_to_two_seconds():
    assert metrics.DURATION_BUCKETS[0] == 0.0005
    assert metrics.DURATION_BUCKETS[-1] == 2.0


def test_actions_requested_and_granted():
    names = ("pull", "push", "delete", "*", "other")
    requested = {a: value("auth_actions_requested_total", action=a) for a in names}
    granted = {a: value("auth_actions_granted_total", action=a) for a in names}
    metrics.count_actions(["pull", "push", "pull", "*", "delete"], ["pull", "pull"])
    assert {a: value("auth_actions_requested_total", action=a) - requested[a] for a in names} == {
        "pull": 2,
        "push": 1,
        "delete": 1,
        "*": 1,
        "other": 0,
    }
    assert {a: value("auth_actions_granted_total", action=a) - granted[a] for a in names} == {
        "pull": 2,
        "push": 0,
        "delete": 0,
        "*": 0,
        "other": 0,
    }


def test_client_chosen_action_names_never_become_labels():
    before = value("auth_actions_requested_total", action="other")
    metrics.count_actions(["x" * 50, "evil"], iter([]))
    text = metrics.render().decode()
    assert "evil" not in text and "x" * 50 not in text
    assert value("auth_actions_requested_total", action="other") == before + 2


def test_bcrypt_credential_cache_and_reload_counters():
    checks = value("auth_bcrypt_checks_total")
    hits = value("auth_credential_cache_lookups_total", result="hit")
    misses = value("auth_credential_cache_lookups_total", result="miss")
    ok = value("auth_config_reloads_total", result="ok")
    failed = value("auth_config_reloads_total", result="failed")
    metrics.count_bcrypt_check()
    metrics.count_credential_cache(hit=True)
    metrics.count_credential_cache(hit=False)
    metrics.count_credential_cache(hit=False)
    metrics.count_config_reload(ok=True)
    metrics.count_config_reload(ok=False)
    assert value("auth_bcrypt_checks_total") == checks + 1
    assert value("auth_credential_cache_lookups_total", result="hit") == hits + 1
    assert value("auth_credential_cache_lookups_total", result="miss") == misses + 2
    assert value("auth_config_reloads_total", result="ok") == ok + 1
    assert value("auth_config_reloads_total", result="failed") == failed + 1


def _count_in_child(times: int) -> None:
    for _ in range(times):
        metrics.count_bcrypt_check()
    metrics.write()  # a forked child ends with os._exit: no atexit, and no time for the thread


def _count_and_wait_for_the_writer(times: int) -> None:
    for _ in range(times):
        metrics.count_bcrypt_check()
    time.sleep(metrics.WRITE_SECONDS * 2.5)


def test_counts_of_forked_processes_are_summed():
    """What uWSGI's workers do: forked after the metrics exist, each counts in its own file."""
    before = value("auth_bcrypt_checks_total")
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_count_in_child, args=(n,)) for n in (3, 4)]
    for child in children:
        child.start()
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    metrics.count_bcrypt_check()
    assert value("auth_bcrypt_checks_total") == before + 8
    assert metrics.set_up().is_dir()  # a child's exit does not remove the parent's directory


def test_a_process_writes_its_counts_within_a_second_without_being_asked():
    """A uWSGI worker that stops serving still has its counts written by its own thread."""
    before = value("auth_bcrypt_checks_total")
    child = multiprocessing.get_context("fork").Process(
        target=_count_and_wait_for_the_writer, args=(5,)
    )
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert value("auth_bcrypt_checks_total") == before + 5


def test_metrics_endpoint(client):
    metrics.count_bcrypt_check()
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    text = response.get_data(as_text=True)
    found = {name for name, _ in samples(text)}
    for name in METRIC_NAMES:
        assert name in found, name


def test_a_token_request_is_not_slowed_by_metrics():
    """Several calls per token request, on its hot path: each must cost microseconds."""
    import timeit

    calls = {
        "observe_token_request": lambda: metrics.observe_token_request("issued", 0.003),
        "count_actions": lambda: metrics.count_actions(("pull", "push"), ("pull",)),
        "count_bcrypt_check": metrics.count_bcrypt_check,
        "count_credential_cache": lambda: metrics.count_credential_cache(True),
    }
    for name, call in calls.items():
        seconds = min(timeit.repeat(call, number=2000, repeat=3)) / 2000
        # The bound leaves room for a busy shared machine.
        assert seconds < 100e-6, f"{name}: {seconds * 1e6:.1f} µs per call"


# --- the multiprocess directory, in fresh interpreters (set_up settles it once a process) -----

FAKE_UWSGI = """
opt = {{"socket": {socket!r}}}
def worker_id():
    return {worker_id}
"""
SET_UP = "from auth_service.records import metrics; print(metrics.set_up())"


def run_fresh(
    tmp_path: Path, code: str, env: dict[str, str | None], uwsgi: str | None = None
) -> str:
    """Run ``code`` in a new interpreter (with a stand-in ``uwsgi`` module) and this process's
    environment changed by ``env`` (None: unset); return its output."""
    path = [str(REPO)]
    if uwsgi is not None:
        fake = tmp_path / "fake-uwsgi"
        fake.mkdir(exist_ok=True)
        (fake / "uwsgi.py").write_text(uwsgi)
        path.insert(0, str(fake))
    # As this process's children get it, which includes the metrics variables it set.
    environment = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(path)}
    environment = {name: value for name, value in environment.items() if value is not None}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def set_up_metrics(tmp_path: Path, env: dict[str, str | None], uwsgi: str | None = None) -> str:
    """Set the metrics up in a new interpreter; return the directory it chose."""
    return run_fresh(tmp_path, SET_UP, env, uwsgi)


def test_importing_the_module_changes_nothing(tmp_path):
    """No directory made, no variable set, prometheus_client not chosen: only set_up does that."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {"TMPDIR": str(temporary), metrics.MULTIPROC_ENV: None, metrics.CHOSEN_HERE_ENV: None}
    code = (
        "import os, sys\n"
        "from auth_service.records import metrics\n"
        "print([os.environ.get(name) for name in (metrics.MULTIPROC_ENV, metrics.CHOSEN_HERE_ENV)],"
        " 'prometheus_client' in sys.modules)"
    )
    assert run_fresh(tmp_path, code, env) == "[None, None] False"
    assert list(temporary.iterdir()) == []
    # The same interpreter's set_up does it all.
    directory = Path(set_up_metrics(tmp_path, env))
    assert directory.parent == temporary


def test_uwsgi_master_uses_and_empties_a_directory_beside_its_socket(tmp_path):
    socket = tmp_path / "auth.sock"
    directory = tmp_path / "auth.sock.metrics"
    directory.mkdir()
    (directory / "counter_12345.db").write_bytes(b"stale")
    (directory / "keep.txt").write_text("not ours")
    uwsgi = FAKE_UWSGI.format(socket=str(socket).encode(), worker_id=0)
    assert set_up_metrics(tmp_path, {}, uwsgi) == str(directory)
    assert not (directory / "counter_12345.db").exists()
    assert (directory / "keep.txt").exists()


def test_the_app_factory_sets_the_metrics_up_in_uwsgis_master(tmp_path, config_dir):
    """uWSGI's master builds the app (auth_service.wsgi) before forking: that empties it."""
    directory = tmp_path / "auth.sock.metrics"
    directory.mkdir()
    (directory / "counter_12345.db").write_bytes(b"stale")
    uwsgi = FAKE_UWSGI.format(socket=str(tmp_path / "auth.sock"), worker_id=0)
    code = "import auth_service.wsgi, os; print(os.environ['PROMETHEUS_MULTIPROC_DIR'])"
    env = {"AUTH_SERVICE_CONFIG_DIR": str(config_dir)}
    assert run_fresh(tmp_path, code, env, uwsgi) == str(directory)
    assert not (directory / "counter_12345.db").exists()


def test_a_uwsgi_worker_never_empties_it(tmp_path):
    """With lazy-apps a worker would build the app: it must not wipe its siblings' counts."""
    directory = tmp_path / "auth.sock.metrics"
    directory.mkdir()
    (directory / "counter_12345.db").write_bytes(b"a sibling's")
    uwsgi = FAKE_UWSGI.format(socket=str(tmp_path / "auth.sock"), worker_id=1)
    assert set_up_metrics(tmp_path, {}, uwsgi) == str(directory)
    assert (directory / "counter_12345.db").exists()


def test_prometheus_multiproc_dir_wins(tmp_path):
    chosen = tmp_path / "chosen"
    uwsgi = FAKE_UWSGI.format(socket=str(tmp_path / "auth.sock"), worker_id=0)
    env = {metrics.MULTIPROC_ENV: str(chosen)}
    assert set_up_metrics(tmp_path, env, uwsgi) == str(chosen)
    assert chosen.is_dir()
    # Outside uWSGI (a command run beside the service) it is used, never emptied.
    (chosen / "counter_1.db").write_bytes(b"the service's")
    assert set_up_metrics(tmp_path, env) == str(chosen)
    assert (chosen / "counter_1.db").exists()


def test_outside_uwsgi_a_private_directory_removed_at_exit(tmp_path):
    directory = Path(set_up_metrics(tmp_path, {}))
    assert directory.name.startswith("auth-service-metrics-")
    assert directory != metrics.set_up()  # not the one it inherited from this process
    assert not directory.exists()


def test_uwsgi_loads_the_app_in_the_master():
    """The master empties the directory as it builds the app: workers must be forked from it."""
    ini = (REPO / "uwsgi.ini").read_text()
    options = [line.split("=")[0].strip() for line in ini.splitlines() if "=" in line]
    assert "lazy-apps" not in options and "lazy" not in options
    assert "master" in options


def _nginx_location(path: str) -> list[str]:
    template = (REPO / "nginx" / "registry.conf.template").read_text()
    pattern = r"\n    location = " + re.escape(path) + r" \{\n(.*?)\n    \}"
    match = re.search(pattern, template, re.S)
    assert match, path
    return [line.strip() for line in match.group(1).splitlines()]


def test_nginx_keeps_metrics_to_loopback():
    block = _nginx_location("/auth/metrics")
    access = [line for line in block if line.startswith(("allow ", "deny "))]
    assert access == ["allow 127.0.0.1;", "allow ::1;", "deny all;"]
    assert "uwsgi_param PATH_INFO /metrics;" in block
    assert block.index("include uwsgi_params;") < block.index("uwsgi_param PATH_INFO /metrics;")


def test_nginx_publishes_health():
    block = _nginx_location("/auth/health")
    assert not any(line.startswith(("allow ", "deny ")) for line in block)
    assert block.index("include uwsgi_params;") < block.index("uwsgi_param PATH_INFO /health;")
