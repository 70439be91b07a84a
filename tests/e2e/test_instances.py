"""Three instances of the token service behind one nginx upstream, sharing their state through a
real redis-server: to clients and guessers alike they behave as one service, and losing an
instance or Redis loses no token request.

Each instance is its own uWSGI (uwsgi.ini) with its own socket, log and config directory (copies
of one, as pods have their own mounts), so nothing but Redis carries state between them. nginx
picks the instance; a test that must ask a given instance talks to its socket (uwsgi_client).
Each instance's log tells which one answered a request.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from auth_service.shared.breaker import RETRY_SECONDS
from auth_service.stack.main import PROXY_MODE, TOKEN_MODE, Stack, free_port

from ..redis_server import RedisServer
from . import uwsgi_client
from .conftest import SERVICE, basic_auth, http, password, write_e2e_config

INSTANCES = 3
BURST = 10  # LOGIN_THROTTLE_BURST's default
ENV = {
    # One check a minute once a pair is throttled: no refill during a test on a slow machine.
    "AUTH_SERVICE_LOGIN_THROTTLE_PER_MINUTE": "1",
    # Generous for a loaded machine: a slow answer must not count as Redis lost.
    "AUTH_SERVICE_REDIS_TIMEOUT_SECONDS": "1",
}
LOAD_THREADS = 6
# How long anything may take to come true on a loaded 2-core machine (polled, not slept).
PATIENCE = 40.0


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@contextmanager
def instances_stack(
    base: Path, redis_url: str | None, instances: int = INSTANCES, auth_mode: str = TOKEN_MODE
) -> Iterator[Stack]:
    """``instances`` instances, each with its own copy of one config directory, behind one
    nginx."""
    write_e2e_config(base / "config-1")
    (base / "config-1" / "users.json").chmod(0o600)
    for number in range(2, instances + 1):
        shutil.copytree(base / "config-1", base / f"config-{number}")
    stack = Stack.for_config_dir(base / "state", base / "config-1", free_port())
    stack.instances = instances
    stack.auth_mode = auth_mode
    stack.instance_env = {
        f"uwsgi-{n}": {"AUTH_SERVICE_CONFIG_DIR": str(base / f"config-{n}")}
        for n in range(2, instances + 1)
    }
    stack.redis_url = redis_url
    stack.extra_env = dict(ENV)
    stack.start(timeout=PATIENCE)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis: RedisServer) -> Iterator[Stack]:
    with instances_stack(tmp_path_factory.mktemp("instances"), redis.url) as running:
        yield running


# --- requests ---------------------------------------------------------------------------------


def token_uri(scope: str) -> str:
    return f"/v2/token?service={SERVICE}&scope={scope}"


def login_status(stack: Stack, user: str, secret: str, client: str = "127.0.0.1") -> int:
    """A login through nginx from ``client`` (a 127.0.0.0/8 address of this machine)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", stack.port, 30, (client, 0))
    try:
        connection.request("GET", token_uri(f"repository:{user}/app:pull"),
                           headers=basic_auth(user, secret))  # fmt: skip
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def refresh_token(stack: Stack) -> str:
    status, _, body = http("GET", f"{stack.realm}?service={SERVICE}&offline_token=true",
                           basic_auth("alice"))  # fmt: skip
    assert status == 200, body
    return json.loads(body)["refresh_token"]


def refresh_form(token: str) -> bytes:
    form = {"grant_type": "refresh_token", "refresh_token": token, "service": SERVICE,
            "client_id": "e2e-instances", "scope": "repository:alice/app:pull"}  # fmt: skip
    return urllib.parse.urlencode(form).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def direct_refresh(stack: Stack, instance: str, token: str) -> uwsgi_client.Answer:
    return uwsgi_client.request(
        stack.socket_of(instance), "POST", "/v2/token", FORM, refresh_form(token)
    )


def direct_login(stack: Stack, instance: str, user: str, secret: str, client: str) -> int:
    return uwsgi_client.request(
        stack.socket_of(instance), "GET", token_uri(f"repository:{user}/app:pull"),
        basic_auth(user, secret), client=client,
    ).status  # fmt: skip


def audit(stack: Stack, instance: str) -> list[dict[str, Any]]:
    """The instance's audit records (its uWSGI log's JSON lines)."""
    lines = stack.log_path(instance).read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith('{"time"')]


def failures_by_instance(stack: Stack, user: str, client: str) -> dict[str, int]:
    return {
        instance: sum(
            1
            for record in audit(stack, instance)
            if (record["user"], record["client"], record["outcome"])
            == (user, client, "bad_credentials")
        )
        for instance in stack.instance_names
    }


def poll(check: Callable[[], Any], what: str, seconds: float = PATIENCE) -> Any:
    """``check()``'s first true value, asked until ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:.0f} s: {what} (last: {value!r})")
        time.sleep(0.1)


def token_requests(
    stack: Stack, extra: dict[str, Callable[[], int]] | None = None
) -> dict[str, Callable[[], int]]:
    """Token requests through nginx, by kind, each giving the answer's status: cached logins,
    refresh grants (POST) and anonymous pulls, and ``extra``."""
    token = refresh_token(stack)
    realm = stack.realm
    return {
        "cached login": lambda: http(
            "GET", f"{realm}?service={SERVICE}&scope=repository:alice/app:pull",
            basic_auth("alice"),
        )[0],
        "refresh grant": lambda: http("POST", realm, FORM, refresh_form(token))[0],
        "anonymous pull": lambda: http(
            "GET", f"{realm}?service={SERVICE}&scope=repository:public/app:pull"
        )[0],
        **(extra or {}),
    }  # fmt: skip


class Load:
    """``requests`` (a function per kind, giving the answer's status) made from LOAD_THREADS
    threads until stopped, each answer counted."""

    def __init__(self, requests: dict[str, Callable[[], int]]) -> None:
        self.requests = requests
        self.answers: list[tuple[str, int, float, float]] = []  # kind, status, sent, seconds
        self.waiting: dict[int, tuple[str, float]] = {}  # by thread: the request and when sent
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(LOAD_THREADS)]

    def _run(self, n: int) -> None:
        # One kind per thread: a thread held up by a frozen instance holds up only its kind.
        kind = list(self.requests)[n % len(self.requests)]
        while not self._stop.is_set():
            sent = time.monotonic()
            self.waiting[threading.get_ident()] = (kind, sent)
            try:
                status = self.requests[kind]()
            except OSError as exc:  # no answer at all: counted, never lost
                status = -1
                print(f"{kind}: {exc}")
            with self._lock:
                self.answers.append((kind, status, sent, time.monotonic() - sent))
                del self.waiting[threading.get_ident()]

    def waiting_longer_than(self, seconds: float) -> set[str]:
        """The kinds of requests unanswered for longer than ``seconds``."""
        now = time.monotonic()
        with self._lock:
            return {kind for kind, sent in self.waiting.values() if now - sent > seconds}

    def statuses(self, since: float = 0.0) -> Counter:
        with self._lock:
            return Counter(
                (kind, status) for kind, status, sent, _ in self.answers if sent >= since
            )

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def assert_no_5xx(answers: Counter) -> None:
    bad = {key: count for key, count in answers.items() if not 200 <= key[1] < 500}
    assert not bad, f"answers other than 2xx-4xx: {bad} of {answers}"


# --- throttling across instances ----------------------------------------------------------------


def guess_everywhere_then_try_the_password(stack: Stack, user: str, client: str) -> None:
    """BURST wrong passwords for ``user`` from ``client`` through nginx, spread over the
    instances; then the right password is refused (429) by every instance."""
    before = failures_by_instance(stack, user, client)
    statuses = [login_status(stack, user, f"wrong-{n}", client) for n in range(BURST)]
    assert statuses == [401] * BURST

    def spread() -> dict[str, int]:
        after = failures_by_instance(stack, user, client)
        return {name: after[name] - before[name] for name in stack.instance_names}

    # The log lines may reach the files a moment after the answers.
    poll(lambda: sum(spread().values()) == BURST, "every failure in an instance's log")
    assert min(spread().values()) >= 1, spread()  # each instance had some

    # Every instance holds the pair now, the right password included: asked directly, and
    # through nginx, which sends these to each instance in turn.
    direct = {name: direct_login(stack, name, user, password(user), client)
              for name in stack.instance_names}  # fmt: skip
    assert direct == dict.fromkeys(stack.instance_names, 429)
    through_nginx = [login_status(stack, user, password(user), client) for _ in range(INSTANCES)]
    assert through_nginx == [429] * INSTANCES
    # From another address the owner gets in.
    assert login_status(stack, user, password(user), "127.0.0.1") == 200


def test_failures_spread_over_the_instances_throttle_the_pair_on_every_instance(
    stack: Stack,
) -> None:
    guess_everywhere_then_try_the_password(stack, "reader", "127.0.0.2")


# --- revocations --------------------------------------------------------------------------------


def revoke(stack: Stack, instance: str, token: str, redis: RedisServer) -> None:
    """`auth-service tokens revoke` as an operator runs it beside ``instance``: its config
    directory, and REDIS_URL."""
    config_dir = stack.instance_env.get(instance, {}).get(
        "AUTH_SERVICE_CONFIG_DIR", str(stack.config_dir)
    )
    result = subprocess.run(
        [sys.executable, "-c", "from auth_service.cli.main import main; main()",
         "tokens", "revoke", token],
        env={"AUTH_SERVICE_CONFIG_DIR": config_dir, "AUTH_SERVICE_REDIS_URL": redis.url,
             "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_a_refresh_token_revoked_through_one_instance_is_refused_by_all_within_a_second(
    stack: Stack, redis: RedisServer
) -> None:
    token = refresh_token(stack)
    for instance in stack.instance_names:
        assert direct_refresh(stack, instance, token).status == 200

    revoke(stack, "uwsgi-2", token, redis)
    revoked_at = time.monotonic()

    # Each instance asked over and over (its workers in turn) until a dozen grants were sent
    # a second or more after the revocation.
    answers: dict[str, list[tuple[float, int]]] = {name: [] for name in stack.instance_names}

    def ask(instance: str) -> None:
        late = 0
        while late < 12 and time.monotonic() < revoked_at + PATIENCE:
            sent = time.monotonic() - revoked_at
            answer = direct_refresh(stack, instance, token)
            assert answer.status == 200 or b"revoked" in answer.body, answer
            answers[instance].append((sent, answer.status))
            late += sent >= 1.0

    threads = [threading.Thread(target=ask, args=(name,)) for name in stack.instance_names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print({name: [(round(sent, 2), status) for sent, status in seen][:8]
           for name, seen in answers.items()})  # fmt: skip
    for instance, seen in answers.items():
        assert sum(sent >= 1.0 for sent, _ in seen) >= 12, (instance, seen)
        accepted_late = [(sent, status) for sent, status in seen if sent >= 1.0 and status == 200]
        assert not accepted_late, (instance, accepted_late)
    # Through nginx too; a new login still gets a refresh token that works.
    assert http("POST", stack.realm, FORM, refresh_form(token))[0] != 200
    fresh = refresh_token(stack)
    assert {direct_refresh(stack, name, fresh).status for name in stack.instance_names} == {200}


# --- losing an instance -------------------------------------------------------------------------


def uwsgi_processes(stack: Stack, instance: str) -> list[int]:
    """The instance's uWSGI master and its workers."""
    master = stack.processes[instance].pid
    workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [master, *map(int, workers)]


def token_lines(stack: Stack, instance: str, offset: int = 0, path: bytes = b"/v2/token") -> int:
    """Requests for ``path`` (a prefix) in the instance's request log from byte ``offset`` on."""
    with stack.log_path(instance).open("rb") as log:
        log.seek(offset)
        return sum(1 for line in log if b" " + path in line and b" => " in line)


def kill_with_requests_in_flight(stack: Stack, victim: str, load: Load, kind: str) -> float:
    """SIGKILL the instance's master and workers while a request of ``kind`` waits on it; when
    it died. Frozen first, until such a request waits: it dies with requests in flight, as an
    instance killed for its memory does, not only between them. (A frozen uWSGI's socket still
    takes connections: its backlog.)"""
    processes = uwsgi_processes(stack, victim)
    for pid in processes:
        os.kill(pid, signal.SIGSTOP)
    poll(lambda: kind in load.waiting_longer_than(0.5), f"a {kind} in flight")
    for pid in processes:
        os.kill(pid, signal.SIGKILL)
    return time.monotonic()


def test_an_instance_killed_under_load_loses_no_token_request(stack: Stack) -> None:
    victim = "uwsgi-2"
    nginx_errors = stack.state_dir / "nginx-error.log"
    errors_before = nginx_errors.stat().st_size
    with Load(token_requests(stack)) as load:
        # Load flowing through every instance, the victim included.
        start = token_lines(stack, victim)
        poll(lambda: token_lines(stack, victim) >= start + 20, "the victim serving the load")
        killed_at = kill_with_requests_in_flight(stack, victim, load, "refresh grant")
        # Requests keep coming while it is gone (nginx finds it dead, then skips it).
        poll(lambda: sum(load.statuses(since=killed_at + 1.0).values()) >= 50, "load meanwhile")
        restarted_log = stack.log_path(victim).stat().st_size
        stack.restart(victim, timeout=PATIENCE)
        # nginx tries it again within fail_timeout (10 s) and it serves.
        poll(lambda: token_lines(stack, victim, restarted_log) >= 10, "the restarted instance")
    answers = load.statuses()
    print(answers)
    assert set(answers.values()) and {status for _, status in answers} == {200}, answers
    after_kill = load.statuses(since=killed_at)
    assert {kind for kind, _ in after_kill} == set(load.requests), after_kill
    # nginx did meet the dead instance: its requests went to the others.
    with nginx_errors.open("rb") as log:
        log.seek(errors_before)
        errors = log.read().decode(errors="replace")
    assert str(stack.socket_of(victim)) in errors, errors[-2000:]


def test_in_proxy_mode_an_instance_killed_under_load_loses_no_registry_request(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """nginx's decision subrequests (auth_request) go to the next instance too: the registry
    requests they guard, a POST starting an upload among them, are all answered."""
    base = tmp_path_factory.mktemp("instances-proxy")
    with instances_stack(base, None, instances=2, auth_mode=PROXY_MODE) as stack:
        alice = basic_auth("alice")
        requests = {
            "GET /v2/": lambda: http("GET", f"{stack.url}/v2/", alice)[0],
            "POST upload": lambda: http(
                "POST", f"{stack.url}/v2/alice/app/blobs/uploads/", alice, b""
            )[0],
        }
        with Load(requests) as load:
            poll(lambda: token_lines(stack, "uwsgi-2", path=b"/v2/") >= 20, "load on uwsgi-2")
            killed_at = kill_with_requests_in_flight(stack, "uwsgi-2", load, "POST upload")
            poll(lambda: sum(load.statuses(since=killed_at + 1.0).values()) >= 50, "load after")
    answers = load.statuses()
    print(answers)
    assert set(answers) == {("GET /v2/", 200), ("POST upload", 202)}, answers


# --- losing Redis ------------------------------------------------------------------------------


def health_status(stack: Stack, instance: str) -> tuple[int, str, Any]:
    answer = uwsgi_client.health(stack.socket_of(instance))
    body = answer.json()
    return answer.status, body["status"], body["checks"].get("redis_reachable")


def all_instances(stack: Stack, check: Callable[[str], bool]) -> bool:
    return all(check(instance) for instance in stack.instance_names)


def wrong_password(stack: Stack, user: str, client: str) -> Callable[[], int]:
    return lambda: login_status(stack, user, "not-the-password", client)


def fallbacks(stack: Stack, instance: str, kind: str) -> float:
    return uwsgi_client.metric(stack.socket_of(instance), "auth_redis_fallbacks_total", kind=kind)


def use_redis_everywhere_while_lost(
    stack: Stack, lose: Callable[[], None], user: str
) -> list[tuple[str, int, float, float]]:
    """Under load, ``lose()`` Redis: each instance's health says degraded (200), its metrics
    count throttle and revocations fallbacks, and tokens are still issued. Returns the answers
    given meanwhile (kind, status, when sent, seconds taken)."""
    token = refresh_token(stack)
    counted = {name: (fallbacks(stack, name, "throttle"), fallbacks(stack, name, "revocations"))
               for name in stack.instance_names}  # fmt: skip
    extra = {"wrong password": wrong_password(stack, "admin", "127.0.0.5")}
    with Load(token_requests(stack, extra)) as load:
        poll(lambda: sum(load.statuses().values()) >= 20, "load before")
        lost_at = time.monotonic()
        lose()
        poll(lambda: all_instances(stack, lambda i: health_status(stack, i) == (200, "degraded",
             False)), "every instance degraded")  # fmt: skip
        # Each instance falls back for throttling and revocations (asked directly, so that
        # each one does) and counts it.
        for instance in stack.instance_names:
            assert direct_login(stack, instance, user, "wrong", "127.0.0.6") == 401
            assert direct_refresh(stack, instance, token).status == 200

        def counted_more(instance: str) -> bool:
            throttle, revocations = counted[instance]
            return (
                fallbacks(stack, instance, "throttle") > throttle
                and fallbacks(stack, instance, "revocations") > revocations
            )

        poll(lambda: all_instances(stack, counted_more), "fallbacks counted by every instance")
        for instance in stack.instance_names:
            up = uwsgi_client.metric(stack.socket_of(instance), "auth_redis_up")
            assert up == 0, instance
        poll(lambda: load.statuses(since=lost_at + 1.0)[("cached login", 200)] >= 10,
             "tokens issued without Redis")  # fmt: skip
    return [answer for answer in load.answers if answer[2] >= lost_at]


def redis_back_everywhere(stack: Stack, back: Callable[[], None], user: str, client: str) -> None:
    """``back()`` brings Redis back: every instance's health is ok again, and failures are
    counted across instances again."""
    back()
    back_at = time.monotonic()
    poll(lambda: all_instances(stack, lambda i: health_status(stack, i) == (200, "ok", True)),
         "every instance ok again")  # fmt: skip
    # Health asked one worker of each instance. Each other worker tries Redis again on its first
    # request once a second has passed since its last failed try, which began before Redis came
    # back and waited at most the timeout: from then on, every worker uses it.
    timeout = float(ENV["AUTH_SERVICE_REDIS_TIMEOUT_SECONDS"])
    time.sleep(max(0.0, back_at + RETRY_SECONDS + timeout - time.monotonic()))
    guess_everywhere_then_try_the_password(stack, user, client)


def test_redis_stopped_mid_run_degrades_every_instance_and_they_use_it_again(
    stack: Stack, redis: RedisServer
) -> None:
    try:
        answers = Counter(
            a[:2] for a in use_redis_everywhere_while_lost(stack, redis.stop, "admin")
        )
        print(answers)
        assert_no_5xx(answers)
        assert answers[("refresh grant", 200)] and answers[("anonymous pull", 200)], answers
        redis_back_everywhere(stack, redis.start, "carol", "127.0.0.4")
    finally:
        if redis.process is None:
            redis.start()


def test_redis_cut_off_mid_run_costs_each_request_at_most_a_short_wait(
    stack: Stack, redis: RedisServer
) -> None:
    """SIGSTOP: Redis's socket still takes connections but nothing answers; each process waits
    REDIS_TIMEOUT_SECONDS once, then falls back without asking for a second."""
    try:
        answers = use_redis_everywhere_while_lost(stack, redis.pause, "alice")
        print(Counter(a[:2] for a in answers), max(a[3] for a in answers))
        assert_no_5xx(Counter(a[:2] for a in answers))
        # A timeout (1 s here) at most, plus a loaded machine's own delays: nothing waits for a
        # Redis that never answers (uWSGI's harakiri, or the clients' 30 s, would end them).
        slowest = max(answers, key=lambda answer: answer[3])
        assert slowest[3] < 10.0, slowest
        redis_back_everywhere(stack, redis.resume, "carol", "127.0.0.7")
    finally:
        if redis.paused:
            redis.resume()
