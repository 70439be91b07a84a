"""One benchmark run: a stack per configuration, wrk per scenario and connection count."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from auth_service.files.settings import load_settings
from auth_service.stack.main import REPO, Stack, free_port

from . import report, wrk
from .scenarios import (
    BCRYPT_COST,
    FLOOD_CONNECTIONS,
    PASSWORD,
    PUBLIC_SCOPE,
    SCENARIOS,
    SERVICE,
    Configuration,
    Scenario,
    authorization,
    write_config,
)

WARM_UP_SECONDS = 2
BCRYPT_CHECKS = 20
IDLE_MS = 50  # an anonymous token this fast: no backlog left from the run before


@dataclass(frozen=True)
class Workers:
    """uWSGI's processes and threads per process, where they override ``uwsgi.ini``'s."""

    processes: int | None = None
    threads: int | None = None


class BenchmarkError(RuntimeError):
    """The stack answered something a benchmark must not measure."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bcrypt_alone(config_dir: Path, env: dict[str, str]) -> tuple[float, str]:
    """Checks per second bcrypt allows on the cores uWSGI's workers may use, and how that was
    found: min(CPUs, BCRYPT_CONCURRENCY) threads checking at once, as the workers' bcrypt
    threads do (bcrypt releases the GIL). One thread's rate times the cores would assume
    the cores scale perfectly; on these machines two threads give 1.85-1.95 times one."""
    pass_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(BCRYPT_COST))
    concurrency = load_settings(config_dir, environ=env).bcrypt_concurrency
    cpus = len(os.sched_getaffinity(0))
    cores = min(cpus, concurrency)

    def check() -> None:
        for _ in range(BCRYPT_CHECKS):
            bcrypt.checkpw(PASSWORD.encode(), pass_hash)

    threads = [threading.Thread(target=check) for _ in range(cores)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rate = BCRYPT_CHECKS * cores / (time.perf_counter() - started)
    how = (
        f"bcrypt alone (cost {BCRYPT_COST}): {cores} threads at once (min of {cpus} CPUs and "
        f"BCRYPT_CONCURRENCY {concurrency}), {BCRYPT_CHECKS} checks each: "
        f"{rate:.1f} checks/s"
    )
    return rate, how


def get(url: str, headers: Sequence[str]) -> tuple[int, bytes]:
    """One request with urllib: (status, body), errors included."""
    fields = dict(line.split(": ", 1) for line in headers)
    request = urllib.request.Request(url, headers=fields)  # noqa: S310 (the stack's http URL)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def check_token(url: str, headers: Sequence[str]) -> None:
    """A benchmark of error answers is worthless: the request must get 200 and a token."""
    status, body = get(url, headers)
    if status != 200 or "token" not in json.loads(body or b"{}"):
        raise BenchmarkError(f"{url}: expected 200 with a token, got {status}: {body[:300]!r}")


def check_refused(url: str) -> None:
    """A wrong password must be refused (401), or turned away (429, 503)."""
    status, body = get(url, [authorization("flood-check", "wrong-password")])
    if status not in (401, 429, 503):
        raise BenchmarkError(f"{url}: a wrong password got {status}: {body[:300]!r}")


def wait_until_idle(stack: Stack, timeout: float = 60) -> None:
    """Wait until the requests of a finished wrk run are served: wrk closes its connections,
    but what nginx already passed to uWSGI's listen queue is still served (bcrypt included),
    and would be measured in the next run."""
    url = f"{stack.realm}?service={SERVICE}&scope={PUBLIC_SCOPE}"  # anonymous: no bcrypt
    deadline = time.monotonic() + timeout
    fast = 0
    while fast < 2:
        if time.monotonic() > deadline:
            raise BenchmarkError(f"the stack is still busy {timeout:.0f}s after a run")
        started = time.perf_counter()
        get(url, [])
        fast = fast + 1 if (time.perf_counter() - started) * 1000 < IDLE_MS else 0
        time.sleep(0.1)


def start_stack(
    base: Path, configuration: Configuration, pass_hash: str, workers: Workers
) -> Stack:
    config_dir = write_config(base / "config", configuration, pass_hash)
    stack = Stack.for_config_dir(base / "state", config_dir, free_port())
    stack.extra_env = dict(configuration.env)
    if configuration.ceiling:
        stack.uwsgi_options += ["--pythonpath", str(REPO), "--module", "benchmarks.ceiling:app"]
    if workers.processes:
        stack.uwsgi_options += ["--processes", str(workers.processes)]
    if workers.threads:
        stack.uwsgi_options += ["--threads", str(workers.threads)]
    stack.start(timeout=120)  # 100,000 users take a while to load
    return stack


def checked_url(stack: Stack, scenario: Scenario) -> str:
    """``scenario``'s URL on ``stack``, once one request to it has got a token."""
    url = f"{stack.realm}?{scenario.query}"
    check_token(url, scenario.headers or [authorization("user000001", PASSWORD)])
    return url


def warm_up(stack: Stack, scenario: Scenario, connections: Sequence[int]) -> None:
    """One request must get a token, then wrk fills the caches and wakes every thread."""
    url = checked_url(stack, scenario)
    counts = scenario.connections or connections
    wrk.run(
        wrk.command(url, max(counts), WARM_UP_SECONDS, scenario.headers, scenario.logins),
        WARM_UP_SECONDS,
    )
    wait_until_idle(stack)


def median_run(runs: Sequence[report.Row]) -> report.Row:
    """The run with the median throughput, whole: its latencies with its own throughput."""
    return sorted(runs, key=lambda run: run.result.ok_per_second)[len(runs) // 2]


def measure_once(stack: Stack, scenario: Scenario, count: int, seconds: float) -> report.Row:
    """One wrk run of ``scenario`` at ``count`` connections, on a stack left idle after it, so
    that what it queued is not measured in the next run (on this stack or another)."""
    url = checked_url(stack, scenario)
    wait_until_idle(stack)
    if scenario.flood:
        return measure_under_flood(stack, url, scenario, count, seconds)
    args = wrk.command(url, count, seconds, scenario.headers, scenario.logins)
    result = wrk.run(args, seconds)
    wait_until_idle(stack)
    return report.Row(scenario.name, count, result, _statuses(result))


def measure_under_flood(
    stack: Stack, url: str, scenario: Scenario, connections: int, seconds: float
) -> report.Row:
    """The legitimate requests, measured while logins.lua sends wrong passwords for new user
    names to the same URL."""
    check_refused(url)
    flood_seconds = seconds + 3
    flood_logins = ("flood-%d", 0, "wrong-password")
    flood = wrk.start(wrk.command(url, FLOOD_CONNECTIONS, flood_seconds, logins=flood_logins))
    try:
        time.sleep(1)  # the flood is in full swing before the measurement starts
        legitimate = wrk.run(wrk.command(url, connections, seconds, scenario.headers), seconds)
    finally:
        flooded = wrk.finish(flood, timeout=flood_seconds + 30)
    wait_until_idle(stack)
    note = f"flood: {flooded.requests / flooded.seconds:,.0f} req/s ({_statuses(flooded)})"
    return report.Row(scenario.name, connections, legitimate, note)


def _statuses(result: wrk.Result) -> str:
    """The status mix logins.lua counted (empty for plain wrk runs)."""
    return ", ".join(f"{code}: {count}" for code, count in sorted(result.statuses.items()))


@dataclass
class Measured:
    """Every run of every row, and bcrypt alone before each round's cold runs."""

    runs: dict[tuple[str, int], list[report.Row]] = field(default_factory=dict)
    bcrypt: list[tuple[float, str]] = field(default_factory=list)  # (checks/s, how)


def measure_rounds(
    stacks: Mapping[str, Stack],
    selected: Sequence[Scenario],
    connections: Sequence[int],
    seconds: float,
    repeats: int,
) -> Measured:
    """Each round measures every scenario once at each connection count. A busy stretch on the
    shared machine then slows one run of every row alike, rather than all the runs of whichever
    rows were measured during it, which would skew their ratios."""
    measured = Measured()
    for scenario in selected:
        log(f"warming up {scenario.name}")
        warm_up(stacks[scenario.configuration.name], scenario, connections)
    for round_number in range(1, repeats + 1):
        log(f"round {round_number} of {repeats}")
        for scenario in selected:
            stack = stacks[scenario.configuration.name]
            if scenario.name == "cold":
                env = {**os.environ, **scenario.configuration.env}
                measured.bcrypt.append(bcrypt_alone(stack.config_dir, env))
                log(f"  {measured.bcrypt[-1][1]}")
            for count in scenario.connections or connections:
                row = measure_once(stack, scenario, count, seconds)
                log(
                    f"  {scenario.name} at {count} connections: "
                    f"{row.result.ok_per_second:,.0f} req/s, "
                    f"p99 {row.result.p99_ms:.1f} ms {row.warning}"
                )
                measured.runs.setdefault((scenario.name, count), []).append(row)
    return measured


def run(
    seconds: float,
    connections: Sequence[int],
    only: Sequence[str] | None,
    workers: Workers,
    markdown: bool,
    repeats: int = 1,
) -> int:
    """Measure the selected scenarios, print the table and the targets; 0 unless one failed.
    Every configuration's stack is up for the whole run; each row is the median of its rounds."""
    unknown = set(only or ()) - {scenario.name for scenario in SCENARIOS}
    if unknown:
        raise BenchmarkError(f"unknown scenario {', '.join(sorted(unknown))}")
    selected = [s for s in SCENARIOS if not only or s.name in only]
    pass_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()
    stacks: dict[str, Stack] = {}
    with tempfile.TemporaryDirectory(prefix="benchmarks-") as tmp:
        try:
            for configuration in {s.configuration.name: s.configuration for s in selected}.values():
                log(f"stack for {configuration.name}")
                base = Path(tmp) / configuration.name
                stacks[configuration.name] = start_stack(base, configuration, pass_hash, workers)
            measured = measure_rounds(stacks, selected, connections, seconds, repeats)
        finally:
            for stack in stacks.values():
                stack.stop()
    return print_results(measured, markdown)


def print_results(measured: Measured, markdown: bool) -> int:
    """The table of median runs, bcrypt alone, and the targets; 0 unless a target failed."""
    rows = [median_run(runs) for runs in measured.runs.values()]
    print(report.table(rows, markdown))
    print()
    bcrypt_rate = None
    if measured.bcrypt:
        bcrypt_rate, bcrypt_how = sorted(measured.bcrypt)[len(measured.bcrypt) // 2]
        print(f"{bcrypt_how}, the median of {len(measured.bcrypt)} (one before each round)")
        for row in rows:
            if row.scenario == "cold":
                share = row.result.ok_per_second / bcrypt_rate
                print(f"  cold at {row.connections} connections: {share:.2f} of that")
        print()
    found = report.targets({(row.scenario, row.connections): row for row in rows}, bcrypt_rate)
    for target in found:
        print(("- " if markdown else "") + target.line())
    return 0 if all(target.passed for target in found) else 2
