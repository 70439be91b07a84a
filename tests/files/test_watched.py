"""Reloading watched files: never an answer older than what the process has seen."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from auth_service.files.watched import WatchedFiles

from .. import helpers


def _watch(path: Path, interval: float = 3600.0, load=None) -> WatchedFiles[str]:
    return WatchedFiles([path], load or path.read_text, interval=interval)


def _rewrite(path: Path, text: str) -> None:
    temporary = path.with_suffix(".new")
    temporary.write_text(text)
    os.replace(temporary, path)  # a new inode, as every writer of the project does


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork in a threaded pytest process
def test_a_forked_worker_reads_changed_files_before_its_first_answer(tmp_path: Path) -> None:
    """uWSGI respawns a killed worker from the master's start-up copy: it must look again."""
    path = tmp_path / "users.json"
    path.write_text("old")
    watched = _watch(path)  # loaded before the fork, as uWSGI's master does
    assert watched.current() == "old"
    _rewrite(path, "new")
    assert helpers.in_forked_child(lambda: watched.current().encode()) == b"new"
    assert watched.current() == "old"  # the parent's interval has not passed: no stat yet


def test_threads_wait_for_a_reload_in_progress_instead_of_serving_the_old_copy(
    tmp_path: Path,
) -> None:
    path = tmp_path / "users.json"
    path.write_text("old")
    loading, finish = threading.Event(), threading.Event()

    def slow_load() -> str:
        text = path.read_text()
        if text == "new":
            loading.set()
            assert finish.wait(10)
        return text

    watched = _watch(path, interval=0.05, load=slow_load)
    _rewrite(path, "new")
    time.sleep(0.1)
    answers: list[str] = []
    reloader = threading.Thread(target=lambda: answers.append(watched.current()))
    reloader.start()
    assert loading.wait(10)
    other = threading.Thread(target=lambda: answers.append(watched.current()))
    other.start()
    time.sleep(0.2)
    assert answers == []  # the second thread waits for the reload, it doesn't answer "old"
    finish.set()
    reloader.join(10)
    other.join(10)
    assert answers == ["new", "new"]


def test_a_change_older_than_the_interval_is_always_seen(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text("v0")
    watched = _watch(path, interval=0.2)
    for version in range(1, 4):
        _rewrite(path, f"v{version}")
        time.sleep(0.25)
        assert watched.current() == f"v{version}"
