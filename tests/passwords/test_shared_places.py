"""Places shared across forked processes: held by one process, free again when it dies."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from auth_service.passwords.shared_places import SharedPlaces


def test_each_place_is_held_once_within_a_process() -> None:
    places = SharedPlaces(2)
    first, second = places.try_take(), places.try_take()
    assert {first, second} == {0, 1}
    assert places.try_take() is None  # the process's own locks don't let a thread in twice
    places.give_back(first)
    assert places.try_take() == first


def test_threads_never_share_a_place() -> None:
    places = SharedPlaces(3)
    taken: list[int | None] = []
    barrier = threading.Barrier(8)

    def take() -> None:
        barrier.wait()
        taken.append(places.try_take())

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    held = [place for place in taken if place is not None]
    assert sorted(held) == [0, 1, 2]


def _fork_holding(places: SharedPlaces, count: int) -> tuple[int, int, int]:
    """A child that, once told to go, takes ``count`` places, says whether it got them all, and
    sleeps until killed. Returns its pid, the pipe end to tell it to go, and the one it answers."""
    go_read, go_write = os.pipe()
    answer_read, answer_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            os.read(go_read, 1)
            held = [places.try_take() for _ in range(count)]
            os.write(answer_write, b"ok" if None not in held else b"no")
            signal.pause()
        finally:
            os._exit(0)
    os.close(go_read)
    os.close(answer_write)
    return pid, go_write, answer_read


def _stop(pid: int, *fds: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    for fd in fds:
        os.close(fd)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork in a threaded pytest process
def test_a_forked_worker_holds_places_and_its_death_frees_them() -> None:
    places = SharedPlaces(2)
    pid, go, answer = _fork_holding(places, 2)
    try:
        os.write(go, b"!")
        assert os.read(answer, 2) == b"ok"
        assert places.try_take() is None  # both held by the other process
    finally:
        _stop(pid, go, answer)
    # Killed mid-hold (a harakiri, the OOM killer): the kernel has freed its places.
    assert sorted([places.try_take(), places.try_take()]) == [0, 1]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_forked_worker_starts_holding_nothing() -> None:
    places = SharedPlaces(1)
    place = places.try_take()  # held here before the fork, as a place of uWSGI's master would be
    pid, go, answer = _fork_holding(places, 1)
    try:
        places.give_back(place)
        os.write(go, b"!")
        # The child inherited the parent's memory, but not its lock: it must not take the
        # place for its own, and so can take it now that the parent gave it back.
        assert os.read(answer, 2) == b"ok"
        assert places.try_take() is None
    finally:
        _stop(pid, go, answer)
