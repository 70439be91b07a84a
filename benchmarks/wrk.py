"""Running ``wrk`` (Debian's package) and reading what it prints."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent
THREADS = 2
# Long enough that a queue of cold logins shows up as latency, not as wrk's timeouts.
TIMEOUT = "10s"

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_LATENCY = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
# Printed by logins.lua's done().
_STATUS = re.compile(r"^status (\d+): (\d+)$", re.MULTILINE)


class WrkError(RuntimeError):
    """wrk failed, or printed something this module cannot read."""


@dataclass(frozen=True)
class Result:
    """One wrk run: throughput counts only 2xx answers, the ones a client can use."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int = 0
    socket_errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def ok_per_second(self) -> float:
        return (self.requests - self.non_2xx) / self.seconds if self.seconds else 0.0


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse(output: str) -> Result:
    """Read requests, duration, p50/p99, non-2xx count, socket errors and status lines."""
    latencies = {pct: _to_ms(value, unit) for pct, value, unit in _LATENCY.findall(output)}
    total = _TOTAL.search(output)
    if total is None or set(latencies) != {"50", "99"}:
        raise WrkError(f"unexpected wrk output (was --latency given?):\n{output}")
    non_2xx = _NON_2XX.search(output)
    errors = _SOCKET_ERRORS.search(output)
    return Result(
        requests=int(total.group(1)),
        seconds=_to_ms(total.group(2), total.group(3)) / 1000,
        p50_ms=latencies["50"],
        p99_ms=latencies["99"],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(map(int, errors.groups())) if errors else 0,
        statuses={int(code): int(count) for code, count in _STATUS.findall(output)},
    )


def command(
    url: str,
    connections: int,
    seconds: float,
    headers: Sequence[str] = (),
    logins: tuple[str, int, str] | None = None,
) -> list[str]:
    """The wrk command line: 2 threads, ``connections``, latency percentiles; with ``logins``
    (user name format, how many, password), logins.lua's changing credentials."""
    args = ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{seconds:g}s", "--latency"]
    args += ["--timeout", TIMEOUT]
    for header in headers:
        args += ["-H", header]
    if logins is None:
        return [*args, url]
    name_format, count, password = logins
    return [*args, "-s", str(LUA_DIR / "logins.lua"), url, "--", name_format, str(count), password]


def start(args: Sequence[str]) -> subprocess.Popen:
    """Start wrk in the background; :func:`finish` collects it."""
    return subprocess.Popen(  # noqa: S603 (wrk, with arguments built here)
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL
    )


def finish(process: subprocess.Popen, timeout: float) -> Result:
    """Wait for a wrk started by :func:`start` (killing it by PID after ``timeout``), parse it."""
    try:
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    if process.returncode != 0:
        raise WrkError(f"wrk exited with {process.returncode}:\n{output}")
    return parse(output)


def run(args: Sequence[str], seconds: float) -> Result:
    """Run wrk to the end (bounded in time) and parse what it printed."""
    return finish(start(args), timeout=seconds + 30)
