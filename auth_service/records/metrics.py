"""Prometheus metrics, counted in every uWSGI worker and summed in the exposition.

prometheus_client's multiprocess mode: each process writes its values to its own memory-mapped
files in one directory, and :func:`render` sums every file there. The directory must be chosen
before prometheus_client is imported (it picks its value class then), be private to one uWSGI
instance, and be emptied when the instance starts. :func:`set_up` settles it, and the app
factory calls it. uWSGI builds the app in its master before forking the workers (uwsgi.ini has no
``lazy-apps``), so the master empties it once per start and the workers inherit the choice:

1. ``$PROMETHEUS_MULTIPROC_DIR`` if set (made if missing);
2. under uWSGI, ``<socket>.metrics`` beside its unix socket (in the container
   ``/run/auth-service/token.sock.metrics``): one per instance, as no two share a socket;
3. otherwise (tests, the development server, the command line) a temporary directory of this
   process's own, removed when it exits.

Only uWSGI's master empties it (the ``*.db`` files in it): a command run beside a live service
with the same environment must not wipe its counts. A worker that exits leaves its file, so
its counts stay in the totals. The one gauge, ``auth_redis_up``, shows the most recent value
any process set (prometheus_client's ``mostrecent`` mode), and the process serving ``/metrics``
sets it just before, so a dead worker's last value never outlives it: nothing needs
``mark_process_dead``. Importing this module does none of that; a count made before
:func:`set_up` sets up first.

Each function below is on the token request path: children of labelled metrics are looked up
once, and the increments are summed in memory and written once a second (:class:`_Batch`).
"""

from __future__ import annotations

import atexit
import bisect
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from auth_service.errors import ISSUED, REFUSALS
from auth_service.forked import PerProcess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client reads MULTIPROC_ENV whenever a process makes its files, so it stays set, and
# child processes inherit it (the end-to-end tests start uWSGI from the test process). This names
# a directory chosen here rather than by the operator, so that a child chooses its own instead.
CHOSEN_HERE_ENV = "AUTH_SERVICE_METRICS_DIR_CHOSEN"


def _uwsgi():
    """The ``uwsgi`` module when running inside uWSGI, else None."""
    try:
        import uwsgi  # type: ignore[import-not-found]
    except ImportError:
        return None
    return uwsgi


def _socket_of(uwsgi) -> str | None:
    socket = uwsgi.opt.get("socket")
    if isinstance(socket, list):
        socket = socket[0] if socket else None
    if isinstance(socket, bytes):
        socket = socket.decode()
    return socket or None


def _private_dir(path: Path) -> Path:
    """``path``, made mode 0700 if missing; refuse one that isn't a directory of ours."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(path)
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.geteuid():
        raise RuntimeError(f"{path}: not a directory of this user's; set {MULTIPROC_ENV}")
    return path


def _choose_directory() -> tuple[Path, bool]:
    """The multiprocess directory, and whether this process must empty it (uWSGI's master)."""
    uwsgi = _uwsgi()
    is_master = uwsgi is not None and uwsgi.worker_id() == 0
    explicit = os.environ.get(MULTIPROC_ENV)
    if explicit and explicit != os.environ.get(CHOSEN_HERE_ENV):
        return _private_dir(Path(explicit)), is_master
    if uwsgi is not None:
        socket = _socket_of(uwsgi)
        if socket and "/" in socket and not socket.startswith("@"):
            return _private_dir(Path(socket + ".metrics")), is_master
        # A TCP or abstract socket: a directory named after it, under the temporary directory.
        name = re.sub(r"[^A-Za-z0-9.-]", "_", socket or "uwsgi")
        base = Path(tempfile.gettempdir())
        return _private_dir(base / f"auth-service-metrics-{os.geteuid()}-{name}"), is_master
    directory = Path(tempfile.mkdtemp(prefix="auth-service-metrics-"))
    atexit.register(_remove_if_ours, directory, os.getpid())
    return directory, False


def _remove_if_ours(directory: Path, creator: int) -> None:
    # A forked child that exits runs this too: only the process that made it removes it.
    if os.getpid() == creator:
        shutil.rmtree(directory, ignore_errors=True)


def _empty(directory: Path) -> None:
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


# The text format render() writes (prometheus_client's CONTENT_TYPE_PLAIN_0_0_4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Every outcome a token request is counted under: its token, or a row of the refusals' table.
OUTCOMES = (ISSUED, *dict.fromkeys(r.metric_outcome for r in REFUSALS if r.metric_outcome))
ACTIONS = ("pull", "push", "delete", "*")
# Any other action name a client sends is counted as this one: client input never makes a label.
OTHER_ACTION = "other"
# From a cached token decision to a bcrypt check queued behind others.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
WRITE_SECONDS = 1.0


class _Pending:
    """One process's increments not yet written, and whether its writer thread runs."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[Any, float] = {}
        self.writer_started = False


class _Batch:
    """Increments made in this process, added to its file at most a second later.

    Each increment of a multiprocess value takes a lock and writes the file, and a token request
    makes several: it should not wait for file writes. Here they are summed in memory under one
    lock and written once a second by a thread of this process's own (made after uWSGI's fork,
    as the bcrypt threads are), when the exposition is read in this process, and at exit.

    A forked process starts with nothing pending and no writer: its parent writes its own
    counts, and a lock held by the parent's writer at the fork would stay held in the child.
    """

    def __init__(self) -> None:
        self._pending = PerProcess(_Pending)

    def add(self, value: Any, amount: float = 1.0) -> None:
        """Add ``amount`` to ``value`` (anything with ``inc``) at the next write."""
        pending = self._pending.get()
        with pending.lock:
            pending.counts[value] = pending.counts.get(value, 0.0) + amount
            start_writer, pending.writer_started = not pending.writer_started, True
        if start_writer:
            threading.Thread(target=self._write_every_second, name="metrics", daemon=True).start()
            atexit.register(self.write)

    def _write_every_second(self) -> None:
        while True:
            time.sleep(WRITE_SECONDS)
            self.write()

    def write(self) -> None:
        """Add every pending increment to this process's file now."""
        pending = self._pending.get()
        with pending.lock:
            counts, pending.counts = pending.counts, {}
        for value, amount in counts.items():
            value.inc(amount)


class _Instruments:
    """This process's metrics, made once by :func:`set_up`."""

    def __init__(self, directory: Path) -> None:
        # Imported only now: prometheus_client picks its value class when it is first imported.
        from prometheus_client import CollectorRegistry, Counter, Histogram, values
        from prometheus_client.multiprocess import MultiProcessCollector

        if not getattr(values.ValueClass, "_multiprocess", False):
            # Something imported prometheus_client first (a test's parser, another library) and
            # it chose its single-process values then. Metrics read values.ValueClass when they
            # are created, so switching now, before ours exist, is what the variable would do.
            values.ValueClass = values.MultiProcessValue()

        self.directory = directory
        # registry=None: the exposition reads the files, not a registry of this process's.
        token_requests = Counter(
            "auth_token_requests",
            "Token requests answered, by outcome.",
            ["outcome"],
            registry=None,
        )
        token_duration = Histogram(
            "auth_token_request_duration_seconds",
            "Time to answer a token request, in seconds.",
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        actions_requested = Counter(
            "auth_actions_requested",
            "Actions requested, one per action and resource.",
            ["action"],
            registry=None,
        )
        actions_granted = Counter(
            "auth_actions_granted",
            "Actions granted, one per action and resource.",
            ["action"],
            registry=None,
        )
        self.bcrypt_checks = Counter(
            "auth_bcrypt_checks", "bcrypt password checks run.", registry=None
        )
        credential_cache = Counter(
            "auth_credential_cache_lookups",
            "Lookups in the verified-credential cache, by result.",
            ["result"],
            registry=None,
        )
        config_reloads = Counter(
            "auth_config_reloads",
            "Reloads of changed configuration files, by result (a failed one keeps the last good).",
            ["result"],
            registry=None,
        )

        # The labelled children, looked up once: .labels() per call costs more than the increment.
        self.requests_by_outcome = {outcome: token_requests.labels(outcome) for outcome in OUTCOMES}
        every_action = (*ACTIONS, OTHER_ACTION)
        self.requested_by_action = {a: actions_requested.labels(a) for a in every_action}
        self.granted_by_action = {a: actions_granted.labels(a) for a in every_action}
        self.cache_hit = credential_cache.labels("hit")
        self.cache_miss = credential_cache.labels("miss")
        self.reload_ok = config_reloads.labels("ok")
        self.reload_failed = config_reloads.labels("failed")
        # The histogram's own values, one per bucket and its sum, so that an observation can be
        # batched: Histogram.observe would write two of them at once. prometheus_client names
        # them _upper_bounds, _buckets and _sum (checked by tests/records/test_metrics.py).
        self.duration_bounds = list(token_duration._upper_bounds)
        self.duration_buckets = list(token_duration._buckets)
        self.duration_sum = token_duration._sum

        self.exposition = CollectorRegistry()
        MultiProcessCollector(self.exposition, str(directory))
        self.batch = _Batch()


_instruments: _Instruments | None = None
_set_up_lock = threading.Lock()


def set_up() -> Path:
    """Choose this instance's multiprocess directory (and, in uWSGI's master, empty it), point
    prometheus_client at it and make the metrics; return the directory. Once per process:
    uWSGI's workers inherit what the master set up."""
    global _instruments
    with _set_up_lock:
        if _instruments is None:
            directory, must_empty = _choose_directory()
            if must_empty:
                _empty(directory)
            if os.environ.get(MULTIPROC_ENV) != str(directory):
                os.environ[MULTIPROC_ENV] = os.environ[CHOSEN_HERE_ENV] = str(directory)
            _instruments = _Instruments(directory)
        return _instruments.directory


def _ready() -> _Instruments:
    """The metrics, set up first if nothing has yet (a command that counts without an app)."""
    set_up()
    assert _instruments is not None
    return _instruments


def observe_token_request(outcome: str, seconds: float) -> None:
    """Count one answered token request and its latency; ``outcome`` is one of OUTCOMES."""
    made = _instruments or _ready()
    try:
        counter = made.requests_by_outcome[outcome]
    except KeyError:
        raise ValueError(f"unknown outcome {outcome!r} (one of {', '.join(OUTCOMES)})") from None
    made.batch.add(counter)
    # The first bucket whose bound holds it (the last bound is +Inf), as Histogram.observe does.
    made.batch.add(made.duration_buckets[bisect.bisect_left(made.duration_bounds, seconds)])
    made.batch.add(made.duration_sum, seconds)


def _count_by_action(batch: _Batch, actions: Iterable[str], children: dict[str, Any]) -> None:
    # Added up first: one addition per action name, not per resource (100 scopes, 4 additions).
    counts: dict[str, int] = {}
    for action in actions:
        counts[action] = counts.get(action, 0) + 1
    other = children[OTHER_ACTION]
    for action, n in counts.items():
        batch.add(children.get(action, other), n)


def count_actions(requested: Iterable[str], granted: Iterable[str]) -> None:
    """Count actions requested and granted: each item is one action for one resource."""
    made = _instruments or _ready()
    _count_by_action(made.batch, requested, made.requested_by_action)
    _count_by_action(made.batch, granted, made.granted_by_action)


def count_bcrypt_check() -> None:
    """Count one bcrypt password check (the dummy one for unknown users too)."""
    made = _instruments or _ready()
    made.batch.add(made.bcrypt_checks)


def count_credential_cache(hit: bool) -> None:
    """Count one lookup in the verified-credential cache."""
    made = _instruments or _ready()
    made.batch.add(made.cache_hit if hit else made.cache_miss)


def count_config_reload(ok: bool) -> None:
    """Count one reload of changed configuration files, good or failed (not the first load)."""
    made = _instruments or _ready()
    made.batch.add(made.reload_ok if ok else made.reload_failed)


class _RedisInstruments:
    """The metrics of Redis's shared state, made on first use: only an instance with
    ``REDIS_URL`` shows them."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge

        self.up = Gauge(
            "auth_redis_up",
            "Whether Redis answered this instance's last attempt (1) or not (0).",
            multiprocess_mode="mostrecent",
            registry=None,
        )
        fallbacks = Counter(
            "auth_redis_fallbacks",
            "Operations done without Redis because it did not answer, by kind.",
            ["kind"],
            registry=None,
        )
        self.fallbacks = {kind: fallbacks.labels(kind) for kind in REDIS_FALLBACK_KINDS}


# What falls back when Redis is away: a throttle bucket operation, a revocations lookup.
REDIS_FALLBACK_KINDS = ("throttle", "revocations")
_redis_instruments: _RedisInstruments | None = None


def _redis_ready() -> _RedisInstruments:
    global _redis_instruments
    _ready()
    with _set_up_lock:
        if _redis_instruments is None:
            _redis_instruments = _RedisInstruments()
        return _redis_instruments


def set_redis_up(up: bool) -> None:
    """Record whether Redis answered this process just now (written at once, not batched:
    it changes rarely)."""
    (_redis_instruments or _redis_ready()).up.set(1 if up else 0)


def count_redis_fallback(kind: str) -> None:
    """Count one operation done without Redis; ``kind`` is one of REDIS_FALLBACK_KINDS."""
    redis = _redis_instruments or _redis_ready()
    try:
        counter = redis.fallbacks[kind]
    except KeyError:
        raise ValueError(f"unknown kind {kind!r} (one of {REDIS_FALLBACK_KINDS})") from None
    (_instruments or _ready()).batch.add(counter)


def write() -> None:
    """Write this process's pending counts to its file now (a process about to end uncleanly)."""
    if _instruments is not None:
        _instruments.batch.write()


def render() -> bytes:
    """The Prometheus text exposition, summed over every process of this instance (this one's
    counts up to now; the others' up to a second ago)."""
    from prometheus_client import generate_latest

    made = _instruments or _ready()
    made.batch.write()
    return generate_latest(made.exposition)
