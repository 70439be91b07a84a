"""The login-crowd rows: first logins in a burst, fair turns under a flood, a password sprayer.

Each is driven by :mod:`benchmarks.loadgen` from loopback addresses of its own, since the
service tells clients apart by address (fair turns, the address bucket):

- ``burst-N``: N first logins of distinct users (never logged in before, so the credential
  cache can't help), sent at the same moment on connections opened beforehand, from one address.
- ``fair``: a wrong-password flood (a new user name every request) at 64 connections from 4
  addresses, on a stack whose address bucket is off; once it is in full swing, 8 distinct users
  log in for the first time at once from a fifth address, while paced probes from a sixth send
  cached, refresh-token and anonymous requests for ``--duration`` seconds.
- ``spray``: one address (a new one each round, so its bucket starts full) tries one wrong
  password against 1,000 user names, 16 at a time; the bcrypt checks it cost are the difference
  in the service's ``auth_bcrypt_checks`` counter (``/auth/metrics``) before and after.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from auth_service.files.settings import load_settings
from auth_service.stack.main import Stack

from . import loadgen, wrk
from .common import BenchmarkError, get, post, wait_until_idle
from .loadgen import Request, Sample
from .report import CrowdRun
from .scenarios import (
    CROWD,
    FLOODED,
    PASSWORD,
    PUBLIC_SCOPE,
    SERVICE,
    USER,
    USER_SCOPE,
    Configuration,
)

HOST = "127.0.0.1"  # where nginx listens; the clients bind addresses of their own
BURST_SIZES = (8, 32, 128)
BURST_ADDRESS = "127.0.0.8"
FAIR_FLOOD_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
FAIR_FLOOD_CONNECTIONS = 64  # in all, shared by the addresses
FAIR_LOGIN_ADDRESS = "127.0.0.6"
FAIR_LOGINS = 8
PROBE_ADDRESS = "127.0.0.7"
PROBE_CONNECTIONS = 2  # per kind of cheap request
# Each probe connection sends one request per interval: about 100 a second of each kind, a p99
# of 500 answers in 5 s. The probes are measured, not load: every request also costs this
# Python client CPU that a real client's would not, and it all comes out of bcrypt's share
# (bcrypt runs at a lower priority), so more probes would slow the first logins measured.
PROBE_INTERVAL = 0.02
FLOOD_LEAD_SECONDS = 1.0  # the flood is in full swing before the measuring starts
SPRAY_NAMES = 1000
SPRAY_CONNECTIONS = 16
SPRAY_PASSWORD = "Spring2024!"  # noqa: S105 (the sprayer's guess, wrong for every user)
SPRAY_TIMEOUT = 180.0
# The service writes its metrics once a second per worker: after this long, every check that
# ended is in the counter.
METRICS_SETTLE_SECONDS = 2.5
FIRST_FRESH_USER = SPRAY_NAMES + 1  # the sprayed users are never logged in as

_REFRESH_FIELDS = {"grant_type": "refresh_token", "service": SERVICE, "scope": USER_SCOPE}


@dataclass(frozen=True)
class CrowdRow:
    """One login-crowd row, measured on the stack of ``configuration``."""

    name: str
    configuration: Configuration
    meaning: str


CROWD_ROWS = (
    *(
        CrowdRow(f"burst-{n}", CROWD, f"{n} first logins of distinct users at once, one address")
        for n in BURST_SIZES
    ),
    CrowdRow(
        "fair",
        FLOODED,
        f"{FAIR_LOGINS} first logins from one address, cached, refresh-token and anonymous "
        f"probes from another, under a wrong-password flood at {FAIR_FLOOD_CONNECTIONS} "
        f"connections from {len(FAIR_FLOOD_ADDRESSES)} more",
    ),
    CrowdRow("spray", CROWD, f"one address, one wrong password, {SPRAY_NAMES} user names"),
)


class FreshUsers:
    """User names of a configuration never logged in as before in this run, handed out once."""

    def __init__(self, configuration: Configuration, first: int = FIRST_FRESH_USER) -> None:
        self._next = first
        self._end = configuration.users  # users_document names user000001..users-1
        self._configuration = configuration.name

    def take(self, count: int) -> list[str]:
        """``count`` names not handed out before; too few left stops the run."""
        if self._next + count > self._end:
            raise BenchmarkError(
                f"{self._configuration}: too few users left for {count} first logins "
                "(fewer --repeat rounds, or more users in benchmarks/scenarios.py)"
            )
        names = [f"user{i:06d}" for i in range(self._next, self._next + count)]
        self._next += count
        return names


def basic(user: str, password: str) -> dict[str, str]:
    """The ``Authorization`` header field of Basic credentials."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def token_path(stack: Stack, *scopes: str) -> str:
    """The token endpoint's path and query on ``stack``."""
    query = urlencode([("service", SERVICE), *(("scope", scope) for scope in scopes)])
    return f"{urlsplit(stack.realm).path}?{query}"


def login(stack: Stack, user: str, password: str = PASSWORD) -> Request:
    """A GET of a token for ``user``'s repository scope, with Basic credentials."""
    return Request("GET", token_path(stack, USER_SCOPE), basic(user, password))


def refresh_request(stack: Stack, refresh_token: str) -> Request:
    """The refresh grant as docker sends it once it holds an identity token."""
    body = urlencode({**_REFRESH_FIELDS, "refresh_token": refresh_token, "client_id": "bench"})
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return Request("POST", urlsplit(stack.realm).path, headers, body.encode())


def refresh_token(stack: Stack) -> str:
    """A refresh token for the measured user (the password grant, ``access_type=offline``)."""
    fields = {
        "grant_type": "password",
        "username": USER,
        "password": PASSWORD,
        "service": SERVICE,
        "scope": USER_SCOPE,
        "access_type": "offline",
        "client_id": "bench",
    }
    status, body = post(stack.realm, urlencode(fields).encode())
    if status != 200 or "refresh_token" not in json.loads(body or b"{}"):
        raise BenchmarkError(f"no refresh token: {status}: {body[:300]!r}")
    return json.loads(body)["refresh_token"]


def measure_burst(stack: Stack, users: FreshUsers, count: int) -> CrowdRun:
    """``count`` first logins of distinct users, sent at the same moment."""
    requests = [login(stack, name) for name in users.take(count)]
    sample = loadgen.burst(HOST, stack.port, BURST_ADDRESS, requests)
    wait_until_idle(stack)
    return CrowdRun(f"burst-{count}", {"logins": sample})


def _flood(stack: Stack, address: str) -> Callable[[], Request | None]:
    """A wrong password for a new user name every request (so no per-user bucket fills)."""
    numbers = itertools.count()
    return loadgen.shared(login(stack, f"flood-{address}-{n}", "wrong-password") for n in numbers)


def _repeat(request: Request) -> Callable[[], Request]:
    return lambda: request


def measure_fair(stack: Stack, users: FreshUsers, refresh: str, seconds: float) -> CrowdRun:
    """First logins and cheap requests from addresses of their own, during a flood; and the
    bcrypt checks a second the stack ran meanwhile, to compare with bcrypt alone."""
    before = bcrypt_checks(stack)
    per_address = FAIR_FLOOD_CONNECTIONS // len(FAIR_FLOOD_ADDRESSES)
    floods = [
        loadgen.Loop(HOST, stack.port, address, per_address, _flood(stack, address)).start()
        for address in FAIR_FLOOD_ADDRESSES
    ]
    probes: dict[str, loadgen.Loop] = {}
    try:
        time.sleep(FLOOD_LEAD_SECONDS)
        kinds = {
            "cached": login(stack, USER),
            "refresh-token": refresh_request(stack, refresh),
            "anonymous": Request("GET", token_path(stack, PUBLIC_SCOPE)),
        }
        probes = {
            kind: loadgen.Loop(
                HOST,
                stack.port,
                PROBE_ADDRESS,
                PROBE_CONNECTIONS,
                _repeat(request),
                PROBE_INTERVAL,
            ).start()
            for kind, request in kinds.items()
        }
        window_ends = time.monotonic() + seconds
        logins = loadgen.burst(
            HOST,
            stack.port,
            FAIR_LOGIN_ADDRESS,
            [login(stack, name) for name in users.take(FAIR_LOGINS)],
        )
        time.sleep(max(0.0, window_ends - time.monotonic()))
    finally:
        samples = loadgen.stop_all([*probes.values(), *floods])
        measured = dict(zip(probes, samples, strict=False))
        flooded = samples[len(probes) :]
    flood = Sample(tuple(a for s in flooded for a in s.answers), min(s.started for s in flooded))
    checks = bcrypt_checks(stack) - before  # the flood's and the first logins'
    wait_until_idle(stack)
    figures = {"checks_per_second": checks / flood.last_seconds}
    return CrowdRun("fair", {"logins": logins, **measured, "flood": flood}, figures)


_COUNTER_LINE = re.compile(r"^(\w+)(?:\{[^}]*\})? (\S+)$", re.MULTILINE)


def counter_value(exposition: str, name: str) -> float:
    """The sum of a metric's samples in Prometheus text (0 if it has none yet)."""
    return sum(
        float(value) for metric, value in _COUNTER_LINE.findall(exposition) if metric == name
    )


def bcrypt_checks(stack: Stack) -> float:
    """The service's bcrypt checks so far, once every worker has written its count."""
    time.sleep(METRICS_SETTLE_SECONDS)
    status, body = get(f"{stack.url}/auth/metrics", [])
    if status != 200:
        raise BenchmarkError(f"/auth/metrics answered {status}: {body[:300]!r}")
    return counter_value(body.decode(), "auth_bcrypt_checks_total")


def spray_bound(burst: int, per_minute: int, seconds: float) -> float:
    """The most bcrypt checks an address's bucket allows in ``seconds`` from full: its burst,
    and its refill since. A bucket that is off (burst 0) allows nothing to be counted on."""
    if burst <= 0:
        return 0.0
    return burst + per_minute / 60 * seconds


def measure_spray(stack: Stack, round_number: int) -> CrowdRun:
    """One wrong password against the sprayed users, from an address new in this round."""
    settings = load_settings(stack.config_dir, environ={**os.environ, **stack.extra_env})
    address = f"127.0.1.{round_number}"
    requests: Iterator[Request] = (
        login(stack, f"user{i:06d}", SPRAY_PASSWORD) for i in range(1, SPRAY_NAMES + 1)
    )
    before = bcrypt_checks(stack)
    loop = loadgen.Loop(
        HOST, stack.port, address, SPRAY_CONNECTIONS, loadgen.shared(requests)
    ).start()
    sample = loop.wait(SPRAY_TIMEOUT)
    checks = bcrypt_checks(stack) - before
    burst, per_minute = (
        settings.login_throttle_address_burst,
        settings.login_throttle_address_per_minute,
    )
    seconds = sample.last_seconds
    figures = {
        "checks": checks,
        "bound": spray_bound(burst, per_minute, seconds),
        "burst": burst,
        "per_minute": per_minute,
        "seconds": seconds,
    }
    wait_until_idle(stack)
    return CrowdRun("spray", {"logins": sample}, figures)


def warm_up(stack: Stack) -> str:
    """Both workers' credential caches hold the measured user (a cached probe must not be a
    first login), and a refresh token for the probes."""
    url = f"{stack.realm}?service={SERVICE}&scope={USER_SCOPE}"
    header = "Authorization: " + basic(USER, PASSWORD)["Authorization"]
    wrk.run(wrk.command(url, 16, 2, [header]), 2)
    wait_until_idle(stack)
    return refresh_token(stack)
