"""Per-process state: made once in each process, again in a forked child."""

from __future__ import annotations

import os
import threading
import time

import pytest

from auth_service.forked import PerProcess

from . import helpers


def test_the_value_is_made_once_in_a_process() -> None:
    made = []
    value = PerProcess(lambda: made.append(1) or object())
    assert value.get() is value.get()
    assert made == [1]


def test_threads_asking_at_once_share_one_value() -> None:
    made = []

    def make() -> object:
        made.append(1)
        time.sleep(0.05)  # long enough for the other threads to ask meanwhile
        return object()

    value = PerProcess(make)
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(value.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert made == [1]
    assert len({id(each) for each in seen}) == 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork in a threaded pytest process
def test_a_forked_child_makes_its_own_value() -> None:
    value = PerProcess(lambda: os.urandom(8))
    parents = value.get()
    childs = helpers.in_forked_child(lambda: value.get() + value.get())
    assert childs[:8] == childs[8:]  # made once in the child too
    assert childs[:8] != parents
    assert value.get() == parents  # the parent's is untouched


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork in a threaded pytest process
def test_a_child_forked_while_a_parent_thread_makes_the_value_does_not_wait_for_it() -> None:
    """The lock a parent's thread holds at the fork is never released in the child."""
    started, finish = threading.Event(), threading.Event()

    def make() -> bytes:
        if not started.is_set():  # the parent's thread: hold the lock across the fork
            started.set()
            assert finish.wait(10)
        return str(os.getpid()).encode()

    value = PerProcess(make)
    parent_thread = threading.Thread(target=value.get)
    parent_thread.start()
    assert started.wait(10)
    try:
        answer = helpers.in_forked_child(value.get)  # a lock held since the fork: no answer
        assert answer and answer != str(os.getpid()).encode()  # its own value, not the parent's
    finally:
        finish.set()
        parent_thread.join(10)
