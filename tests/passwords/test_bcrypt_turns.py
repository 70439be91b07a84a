"""The bcrypt gate: bounded running and waiting checks, identical checks shared."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from auth_service.passwords.bcrypt_turns import BCRYPT_NICENESS, BcryptGate, Overloaded


def _blocked_check(started: threading.Event, release: threading.Event, answer: str = "ok"):
    def check() -> str:
        started.set()
        assert release.wait(10)
        return answer

    return check


def test_identical_checks_share_one_run() -> None:
    gate = BcryptGate(concurrency=1, queue=0)
    runs = []
    started, release = threading.Event(), threading.Event()

    def check() -> str:
        runs.append(1)
        started.set()
        assert release.wait(10)
        return "alice"

    with ThreadPoolExecutor(8) as pool:
        results = [pool.submit(gate.run, b"same", check) for _ in range(8)]
        assert started.wait(10)
        time.sleep(0.2)  # the other seven are following the first by now
        release.set()
        answers = [r.result(10) for r in results]
    assert answers == ["alice"] * 8
    assert len(runs) == 1  # with queue=0, a second run would have been refused, not shared


def test_beyond_running_and_waiting_places_a_check_is_refused_at_once() -> None:
    gate = BcryptGate(concurrency=1, queue=1)
    started, release = threading.Event(), threading.Event()
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(gate.run, b"a", _blocked_check(started, release, "a"))
        assert started.wait(10)
        waiting = pool.submit(gate.run, b"b", lambda: "b")
        # One runs, one waits: a third distinct check has no place.
        time.sleep(0.2)  # the waiting check has been admitted by now
        with pytest.raises(Overloaded):
            gate.run(b"c", lambda: "c")
        release.set()
        assert running.result(10) == "a"
        assert waiting.result(10) == "b"
    assert gate.run(b"c", lambda: "c") == "c"  # places are given back


def test_a_failing_check_fails_its_followers_and_is_not_remembered() -> None:
    gate = BcryptGate(concurrency=1, queue=0)

    def broken() -> str:
        raise ValueError("boom")

    with pytest.raises(ValueError):
        gate.run(b"k", broken)
    assert gate.run(b"k", lambda: "fresh") == "fresh"


def test_checks_run_at_a_lower_priority_than_requests() -> None:
    gate = BcryptGate(concurrency=1, queue=0)
    seen = gate.run(b"k", lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    assert seen == min(19, os.getpriority(os.PRIO_PROCESS, 0) + BCRYPT_NICENESS)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) != seen


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork in a threaded pytest process
def test_the_places_are_shared_by_forked_workers_and_a_turn_passes_between_them() -> None:
    gate = BcryptGate(concurrency=1, queue=1)  # made before the fork, as uWSGI's master does
    go_read, go_write = os.pipe()
    running_read, running_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the other worker: one check, running until told to end)

        def check() -> str:
            os.write(running_write, b"!")
            os.read(go_read, 1)
            return "theirs"

        try:
            gate.run(b"theirs", check)
        finally:
            os._exit(0)
    try:
        assert os.read(running_read, 1) == b"!"
        ran = threading.Event()

        def mine() -> str:
            ran.set()
            return "mine"

        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(gate.run, b"mine", mine)
            time.sleep(0.2)
            assert not ran.is_set()  # the other worker's check has the only turn
            with pytest.raises(Overloaded):  # and with this one waiting, no place is left
                gate.run(b"third", lambda: "third")
            os.write(go_write, b"!")
            assert waiting.result(10) == "mine"  # the turn passed to this worker
    finally:
        os.waitpid(pid, 0)
        for fd in (go_read, go_write, running_read, running_write):
            os.close(fd)


def _record(order: list[str], name: str):
    def check() -> str:
        order.append(name)
        return name

    return check


def _queue_behind_a_blocker(gate: BcryptGate, pool: ThreadPoolExecutor, logins):
    """Start a check that holds the only turn, queue ``logins`` (key, address, user) behind it in
    that order, and return (release, blocker's future, the logins' futures, the order they ran)."""
    started, release = threading.Event(), threading.Event()
    blocker = pool.submit(gate.run, b"blocker", _blocked_check(started, release), "x", "x")
    assert started.wait(10)
    order: list[str] = []
    futures = []
    for key, address, user in logins:
        futures.append(pool.submit(gate.run, key, _record(order, key.decode()), address, user))
        time.sleep(0.02)  # queued in this order
    time.sleep(0.2)
    return release, blocker, futures, order


def test_logins_wait_for_a_turn_instead_of_being_refused() -> None:
    gate = BcryptGate(concurrency=1, queue=16, wait_seconds=10)
    logins = [(f"u{i}".encode(), "10.0.0.1", f"u{i}") for i in range(12)]
    with ThreadPoolExecutor(16) as pool:
        release, blocker, futures, order = _queue_behind_a_blocker(gate, pool, logins)
        assert order == []  # all of them are waiting, none was refused
        release.set()
        assert [f.result(10) for f in futures] == [key.decode() for key, _, _ in logins]
        assert blocker.result(10) == "ok"


def test_a_login_that_gets_no_turn_within_the_wait_is_refused() -> None:
    gate = BcryptGate(concurrency=1, queue=16, wait_seconds=0.3)
    started, release = threading.Event(), threading.Event()
    with ThreadPoolExecutor(2) as pool:
        blocker = pool.submit(gate.run, b"blocker", _blocked_check(started, release))
        assert started.wait(10)
        began = time.monotonic()
        with pytest.raises(Overloaded):
            gate.run(b"late", lambda: "late")
        assert 0.25 <= time.monotonic() - began < 5
        release.set()
        assert blocker.result(10) == "ok"
    assert gate.run(b"late", lambda: "late") == "late"  # it left the queue: nothing is stuck


def test_turns_go_round_robin_by_address_then_by_user() -> None:
    """An address with many logins waiting delays another address's one login by one check."""
    gate = BcryptGate(concurrency=1, queue=32, wait_seconds=10)
    flood = [(f"a{i}".encode(), "10.0.0.1", "alice" if i % 2 else "bob") for i in range(8)]
    late = [(b"b0", "10.0.0.2", "carol")]
    with ThreadPoolExecutor(16) as pool:
        release, _, futures, order = _queue_behind_a_blocker(gate, pool, flood + late)
        release.set()
        for future in futures:
            future.result(10)
    assert order.index("b0") <= 1  # not ninth, as in arrival order
    # Within the flood's address, its two users alternate.
    flood_order = [name for name in order if name.startswith("a")]
    users = ["alice" if int(name[1:]) % 2 else "bob" for name in flood_order]
    assert all(users[i] != users[i + 1] for i in range(len(users) - 1))


def test_an_address_holding_its_share_of_turns_waits_while_another_address_does() -> None:
    gate = BcryptGate(concurrency=2, queue=32, wait_seconds=10)
    started = [threading.Event(), threading.Event()]
    release = [threading.Event(), threading.Event()]
    order: list[str] = []
    with ThreadPoolExecutor(8) as pool:
        running = [
            pool.submit(gate.run, f"r{i}".encode(), _blocked_check(started[i], release[i]), "A")
            for i in range(2)
        ]
        assert all(event.wait(10) for event in started)  # A holds both turns
        waiting = [pool.submit(gate.run, b"a-next", _record(order, "a-next"), "A", "u")]
        time.sleep(0.05)
        waiting.append(pool.submit(gate.run, b"b-first", _record(order, "b-first"), "B", "v"))
        time.sleep(0.2)
        release[0].set()  # one turn frees: A, still holding the other, is over its share
        for future in waiting:
            future.result(10)
        release[1].set()
        for future in running:
            future.result(10)
    assert order == ["b-first", "a-next"]


def test_an_address_that_arrives_during_a_flood_goes_before_the_flood_s_next_login() -> None:
    gate = BcryptGate(concurrency=1, queue=32, wait_seconds=10)
    started, release = threading.Event(), threading.Event()
    order: list[str] = []
    with ThreadPoolExecutor(16) as pool:
        # The flooding address already has the turn, and more of its logins wait.
        blocker = pool.submit(gate.run, b"a-first", _blocked_check(started, release), "A", "u0")
        assert started.wait(10)
        flood = [
            pool.submit(gate.run, f"a{i}".encode(), _record(order, f"a{i}"), "A", f"u{i}")
            for i in range(1, 6)
        ]
        time.sleep(0.1)
        late = pool.submit(gate.run, b"b", _record(order, "b"), "B", "v")
        time.sleep(0.2)
        release.set()
        for future in [blocker, *flood, late]:
            future.result(10)
    assert order[0] == "b", order


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork in a threaded pytest process
def test_a_worker_whose_address_had_fewer_turns_wins_the_next_turn_from_another_worker() -> None:
    """The other worker floods from one address; this worker's one login from another address
    starts next, although the flooding worker looks for the freed turn as often."""
    gate = BcryptGate(concurrency=1, queue=32, wait_seconds=10)  # before the fork, as uWSGI
    events_read, events_write = os.pipe()
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the flooding worker)
        try:

            def flood_check(name: str):
                def check() -> str:
                    os.write(events_write, name.encode() + b"\n")
                    if name == "a0":
                        os.read(go_read, 1)  # holds the only turn until told
                    else:
                        time.sleep(0.05)
                    return name

                return check

            with ThreadPoolExecutor(8) as pool:
                first = pool.submit(gate.run, b"a0", flood_check("a0"), "A", "u0")
                time.sleep(0.2)
                rest = [
                    pool.submit(gate.run, f"a{i}".encode(), flood_check(f"a{i}"), "A", f"u{i}")
                    for i in range(1, 6)
                ]
                for future in [first, *rest]:
                    future.result(20)
        finally:
            os._exit(0)
    try:
        time.sleep(0.5)  # the other worker holds the turn and five more of its logins wait

        def mine() -> str:
            os.write(events_write, b"b\n")
            return "b"

        with ThreadPoolExecutor(1) as pool:
            late = pool.submit(gate.run, b"b", mine, "B", "v")
            time.sleep(0.2)
            os.write(go_write, b"!")
            assert late.result(20) == "b"
        os.waitpid(pid, 0)
        pid = 0
        os.close(events_write)
        started = []
        with os.fdopen(events_read) as events:
            started = events.read().split()
        assert started[:2] == ["a0", "b"], started
    finally:
        if pid:
            os.waitpid(pid, 0)
        os.close(go_read)
        os.close(go_write)
