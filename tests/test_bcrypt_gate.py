"""The bcrypt gate: bounded running and waiting checks, identical checks shared."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from auth_service.bcrypt_gate import BCRYPT_NICENESS, BcryptGate, Overloaded


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
