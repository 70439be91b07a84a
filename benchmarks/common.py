"""What every kind of row needs: the error that stops a run, progress lines, plain requests to
the stack, and waiting until the stack has served what a run left queued."""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from auth_service.stack.main import Stack

from .scenarios import PUBLIC_SCOPE, SERVICE

IDLE_MS = 50  # an anonymous token this fast: no backlog left from the run before
# uWSGI using less than this share of one core over the window: no bcrypt check left running
# (one uses a whole core).
IDLE_CPU_SHARE = 0.05
IDLE_CPU_WINDOW = 0.5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchmarkError(RuntimeError):
    """The stack answered something a benchmark must not measure."""


def log(message: str) -> None:
    """A progress line on stderr (the table goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


def get(url: str, headers: Sequence[str]) -> tuple[int, bytes]:
    """One request with urllib: (status, body), errors included."""
    fields = dict(line.split(": ", 1) for line in headers)
    request = urllib.request.Request(url, headers=fields)  # noqa: S310 (the stack's http URL)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def post(url: str, form: bytes) -> tuple[int, bytes]:
    """One form POST with urllib: (status, body), errors included."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    request = urllib.request.Request(url, form, headers)  # noqa: S310 (the stack's http URL)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def cpu_seconds_of_stat(stat: str) -> float:
    """A process's CPU time (user and system, all its threads) from ``/proc/PID/stat``."""
    fields = stat[stat.rindex(")") + 2 :].split()  # after the name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14, 15


def uwsgi_cpu_seconds(stack: Stack) -> float:
    """CPU time so far of the stack's uWSGI: its master and its workers."""
    master = stack.processes["uwsgi"].pid
    pids = [str(master)]
    for children in Path(f"/proc/{master}/task").glob("*/children"):
        pids += children.read_text().split()
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds_of_stat(Path(f"/proc/{pid}/stat").read_text())
        except (FileNotFoundError, ProcessLookupError):  # a worker that just exited
            continue
    return total


def wait_until_idle(stack: Stack, timeout: float = 60) -> None:
    """Wait until the requests of a finished run are served: the clients close their
    connections, but what nginx already passed to uWSGI is still served, and would be measured
    in the next run. Cheap requests answer fast while waiting logins are still being checked
    (bcrypt runs at a lower priority), so the stack is idle only once uWSGI uses (almost) no
    CPU as well."""
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
    while True:
        before = uwsgi_cpu_seconds(stack)
        time.sleep(IDLE_CPU_WINDOW)
        if uwsgi_cpu_seconds(stack) - before < IDLE_CPU_SHARE * IDLE_CPU_WINDOW:
            return
        if time.monotonic() > deadline:
            raise BenchmarkError(f"uWSGI still uses the CPU {timeout:.0f}s after a run")
