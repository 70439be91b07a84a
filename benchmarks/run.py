"""One benchmark run: a stack per configuration, wrk per scenario and connection count."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from auth_service.files.settings import load_settings
from auth_service.stack.main import REPO, Stack, free_port

from . import crowd, proxy, report, wrk
from .common import BenchmarkError, get, log, wait_until_idle
from .crowd import CROWD_ROWS, CrowdRow, FreshUsers
from .scenarios import (
    BCRYPT_COST,
    FLOOD_CONNECTIONS,
    PASSWORD,
    SCENARIOS,
    Configuration,
    Scenario,
    authorization,
    write_config,
)

WARM_UP_SECONDS = 2
BCRYPT_CHECKS = 20


@dataclass(frozen=True)
class Workers:
    """uWSGI's processes and threads per process, where they override ``uwsgi.ini``'s."""

    processes: int | None = None
    threads: int | None = None


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


def start_stack(
    base: Path, configuration: Configuration, pass_hash: str, workers: Workers
) -> Stack:
    config_dir = write_config(base / "config", configuration, pass_hash)
    # Proxy mode's stack has a second server, for the decision alone (benchmarks/proxy.py).
    kind = proxy.DecisionStack if configuration.auth_mode == proxy.PROXY_MODE else Stack
    stack = kind.for_config_dir(base / "state", config_dir, free_port())
    stack.extra_env = dict(configuration.env)
    stack.auth_mode = configuration.auth_mode
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
    """Every run of every row, and bcrypt alone once a round, before its first cold, burst or
    fair row."""

    runs: dict[tuple[str, int], list[report.Row]] = field(default_factory=dict)
    bcrypt: list[tuple[float, str]] = field(default_factory=list)  # (checks/s, how)
    crowd: dict[str, list[report.CrowdRun]] = field(default_factory=dict)
    proxy: proxy.ProxyMeasured = field(default_factory=lambda: proxy.ProxyMeasured({}, {}))


# Groups of rows --only takes by one name.
ALIASES = {
    "keep": ("ceiling", "anonymous", "cached"),
    "burst": tuple(row.name for row in CROWD_ROWS if row.name.startswith("burst-")),
    "crowd": ("burst", "fair", "spray", "keep"),
    "proxy": proxy.PROXY_ROWS,
}


def expand_only(names: Sequence[str] | None) -> set[str] | None:
    """The row names ``--only`` selects, its aliases expanded; None selects every row."""
    if not names:
        return None
    known = {s.name for s in SCENARIOS} | {row.name for row in CROWD_ROWS} | set(proxy.PROXY_ROWS)
    selected: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name in ALIASES:
            pending += ALIASES[name]
        elif name in known:
            selected.add(name)
        else:
            raise BenchmarkError(f"unknown scenario {name}")
    return selected


def _needs_bcrypt_alone(name: str) -> bool:
    return name in ("cold", "fair") or name.startswith("burst-")


class _BcryptOncePerRound:
    """bcrypt alone, measured before the first row of a round that needs it."""

    def __init__(self, measured: Measured) -> None:
        self._measured = measured
        self._round = 0

    def before(self, name: str, stack: Stack, round_number: int) -> None:
        if not _needs_bcrypt_alone(name) or self._round == round_number:
            return
        self._round = round_number
        env = {**os.environ, **stack.extra_env}
        self._measured.bcrypt.append(bcrypt_alone(stack.config_dir, env))
        log(f"  {self._measured.bcrypt[-1][1]}")


def measure_rounds(
    stacks: Mapping[str, Stack],
    selected: Sequence[Scenario],
    connections: Sequence[int],
    seconds: float,
    repeats: int,
    crowd_rows: Sequence[CrowdRow] = (),
    proxy_rows: Sequence[str] = (),
) -> Measured:
    """Each round measures every scenario once at each connection count, then every login-crowd
    row once. A busy stretch on the shared machine then slows one run of every row alike,
    rather than all the runs of whichever rows were measured during it, which would skew their
    ratios."""
    measured = Measured()
    bcrypt_once = _BcryptOncePerRound(measured)
    for scenario in selected:
        log(f"warming up {scenario.name}")
        warm_up(stacks[scenario.configuration.name], scenario, connections)
    fresh: dict[str, FreshUsers] = {}
    refresh_tokens: dict[str, str] = {}
    for row in crowd_rows:
        name = row.configuration.name
        if name not in fresh:
            log(f"warming up {name}")
            refresh_tokens[name] = crowd.warm_up(stacks[name])
            fresh[name] = FreshUsers(row.configuration)
    if proxy_rows:
        log("warming up proxy mode")
        token_stack = stacks[proxy.TOKEN_STACK.name]
        proxy_stack = stacks[proxy.PROXY_STACK.name]
        ceiling_stack = stacks.get(proxy.PROXY_CEILING_STACK.name)
        proxy.warm_up(token_stack, proxy_stack)
    for round_number in range(1, repeats + 1):
        log(f"round {round_number} of {repeats}")
        for scenario in selected:
            stack = stacks[scenario.configuration.name]
            bcrypt_once.before(scenario.name, stack, round_number)
            for count in scenario.connections or connections:
                row = measure_once(stack, scenario, count, seconds)
                log(
                    f"  {scenario.name} at {count} connections: "
                    f"{row.result.ok_per_second:,.0f} req/s, "
                    f"p99 {row.result.p99_ms:.1f} ms {row.warning}"
                )
                measured.runs.setdefault((scenario.name, count), []).append(row)
        for crowd_row in crowd_rows:
            name = crowd_row.configuration.name
            bcrypt_once.before(crowd_row.name, stacks[name], round_number)
            wait_until_idle(stacks[name])
            if crowd_row.name.startswith("burst-"):
                size = report.burst_size(crowd_row.name)
                run = crowd.measure_burst(stacks[name], fresh[name], size)
            elif crowd_row.name == "fair":
                run = crowd.measure_fair(stacks[name], fresh[name], refresh_tokens[name], seconds)
            else:
                run = crowd.measure_spray(stacks[name], round_number)
            log(
                "  "
                + "; ".join(
                    f"{run.name} {kind}: {sample.status_text()}, "
                    f"p99 {sample.latency_ms(99):.1f} ms, last {sample.last_seconds:.2f} s"
                    for kind, sample in run.samples.items()
                )
                + "".join(f"; {key} {value:g}" for key, value in run.figures.items())
            )
            measured.crowd.setdefault(run.name, []).append(run)
        if proxy_rows:
            proxy.measure_round(
                token_stack, proxy_stack, set(proxy_rows), seconds, measured.proxy, ceiling_stack
            )
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
    names = expand_only(only)
    selected = [s for s in SCENARIOS if names is None or s.name in names]
    crowd_rows = [row for row in CROWD_ROWS if names is None or row.name in names]
    proxy_rows = [name for name in proxy.PROXY_ROWS if names is None or name in names]
    configurations = {
        each.configuration.name: each.configuration for each in (*selected, *crowd_rows)
    }
    if proxy_rows:
        for configuration in (proxy.TOKEN_STACK, proxy.PROXY_STACK):
            configurations[configuration.name] = configuration
        if proxy.DECISION_ROW in proxy_rows:
            configurations[proxy.PROXY_CEILING_STACK.name] = proxy.PROXY_CEILING_STACK
    pass_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()
    stacks: dict[str, Stack] = {}
    with tempfile.TemporaryDirectory(prefix="benchmarks-") as tmp:
        try:
            for configuration in configurations.values():
                log(f"stack for {configuration.name}")
                base = Path(tmp) / configuration.name
                stacks[configuration.name] = start_stack(base, configuration, pass_hash, workers)
            measured = measure_rounds(
                stacks, selected, connections, seconds, repeats, crowd_rows, proxy_rows
            )
        finally:
            for stack in stacks.values():
                stack.stop()
    return print_results(measured, markdown)


def print_results(measured: Measured, markdown: bool) -> int:
    """The tables of median runs, bcrypt alone, and the targets; 0 unless a target failed."""
    rows = [median_run(runs) for runs in measured.runs.values()]
    if rows:
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
    if measured.crowd:
        medians = [report.median_crowd_run(runs) for runs in measured.crowd.values()]
        print(report.crowd_table(medians, bcrypt_rate, markdown))
        print()
    found = report.targets({(row.scenario, row.connections): row for row in rows}, bcrypt_rate)
    found += report.crowd_targets(measured.crowd, bcrypt_rate)
    proxy_lines, proxy_targets = proxy.report(measured.proxy)
    for line in proxy_lines:
        print(("- " if markdown else "") + line)
    if proxy_lines:
        print()
    found += proxy_targets
    for target in found:
        print(("- " if markdown else "") + target.line())
    return 0 if all(target.passed for target in found) else 2
