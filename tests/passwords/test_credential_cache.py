"""The verified-credential cache: hits only after success, against the hash the user has now."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from flask import Flask

from auth_service.files import users as users_module
from auth_service.files.users import User
from auth_service.passwords.credential_cache import CredentialCache

from .. import helpers


def _user(name: str, password: str = "") -> User:
    password = password or f"{name}-pw"
    return User(name, helpers.hash_password(password).encode(), {})


@pytest.fixture
def bcrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every bcrypt check the service runs, by the hash it checked against."""
    calls: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(users_module.bcrypt, "checkpw", spy)
    return calls


def _status(app: Flask, user: str, password: str) -> int:
    response = app.test_client().get(
        f"/v2/token?service={helpers.SERVICE}&scope=repository:team/app:pull",
        headers=helpers.basic(user, password),
    )
    return response.status_code


def test_a_success_is_accepted_again_without_bcrypt(app: Flask, bcrypt_calls: list) -> None:
    assert _status(app, "alice", "alice-pw") == 200
    assert len(bcrypt_calls) == 1
    for _ in range(3):
        assert _status(app, "alice", "alice-pw") == 200
    assert len(bcrypt_calls) == 1


def test_a_failure_is_never_cached(app: Flask, bcrypt_calls: list) -> None:
    assert _status(app, "alice", "wrong") == 401
    assert _status(app, "alice", "wrong") == 401
    assert len(bcrypt_calls) == 2
    # Nor does it spoil the right password, which is checked (once) and then cached.
    assert _status(app, "alice", "alice-pw") == 200
    assert _status(app, "alice", "alice-pw") == 200
    assert len(bcrypt_calls) == 3


def test_another_password_of_a_cached_user_is_checked(app: Flask, bcrypt_calls: list) -> None:
    assert _status(app, "alice", "alice-pw") == 200
    assert _status(app, "alice", "alice-pw2") == 401
    assert _status(app, "bob", "alice-pw") == 401
    assert len(bcrypt_calls) == 3


def _rewrite_users(config_dir: Path, change: Any) -> None:
    path = config_dir / "users.json"
    document = json.loads(path.read_text())
    change(document)
    helpers.write_json(path, document)
    helpers.bump_mtime(path)


def test_a_password_change_ends_the_entry_at_once(
    make_app: Any, config_dir: Path, bcrypt_calls: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("auth_service.files.live_config.RELOAD_CHECK_SECONDS", 0)
    app = make_app()
    assert _status(app, "alice", "alice-pw") == 200

    def new_password(document: dict) -> None:
        document["alice"]["pass_hash"] = helpers.hash_password("new-pw")

    _rewrite_users(config_dir, new_password)
    assert _status(app, "alice", "alice-pw") == 401
    assert len(bcrypt_calls) == 2  # the old password went to bcrypt, not the cache
    assert _status(app, "alice", "new-pw") == 200


def test_a_removed_user_is_refused_at_once(
    make_app: Any, config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("auth_service.files.live_config.RELOAD_CHECK_SECONDS", 0)
    app = make_app()
    assert _status(app, "alice", "alice-pw") == 200
    _rewrite_users(config_dir, lambda document: document.pop("alice"))
    assert _status(app, "alice", "alice-pw") == 401


def test_zero_seconds_turns_it_off(make_app: Any, bcrypt_calls: list) -> None:
    app = make_app(CREDENTIAL_CACHE_SECONDS=0)
    for _ in range(3):
        assert _status(app, "alice", "alice-pw") == 200
    assert len(bcrypt_calls) == 3


def test_entries_expire() -> None:
    clock = helpers.FakeClock()
    cache = CredentialCache(60, 10, clock=clock)
    alice = _user("alice")
    key = cache.fingerprint("alice", "alice-pw")
    cache.remember(key, alice)
    clock.now += 59
    assert cache.accepts(key, alice)
    clock.now += 2
    assert not cache.accepts(key, alice)
    assert len(cache) == 0


def test_the_size_is_bounded_and_the_least_recently_used_goes() -> None:
    cache = CredentialCache(300, 3)
    users = {name: _user(name) for name in ("a", "b", "c", "d")}
    keys = {name: cache.fingerprint(name, f"{name}-pw") for name in users}
    for name in "abc":
        cache.remember(keys[name], users[name])
    assert cache.accepts(keys["a"], users["a"])  # a is now the most recently used
    cache.remember(keys["d"], users["d"])
    assert len(cache) == 3
    assert not cache.accepts(keys["b"], users["b"])
    assert all(cache.accepts(keys[name], users[name]) for name in "acd")


def test_memory_holds_neither_the_password_nor_a_plain_hash_of_it() -> None:
    cache = CredentialCache(300, 10)
    password = "correct horse battery staple"
    key = cache.fingerprint("alice", password)
    cache.remember(key, _user("alice", password))
    plain = {
        hashlib.sha256(password.encode()).digest(),
        hashlib.sha256(b"alice" + password.encode()).digest(),
    }
    assert key not in plain
    assert password.encode() not in key
    # Keyed by a random key of this instance: another instance (process) computes another HMAC.
    assert CredentialCache(300, 10).fingerprint("alice", password) != key
    # The user name's length is part of the message: names and passwords can't trade characters.
    assert cache.fingerprint("ab", "c") != cache.fingerprint("a", "bc")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork in a threaded pytest process
def test_a_forked_worker_has_its_own_key_and_starts_empty() -> None:
    """uWSGI forks the workers from the master: none may share the master's key or entries."""
    cache = CredentialCache(ttl_seconds=60, max_entries=10)
    alice = _user("alice")
    fingerprint = cache.fingerprint("alice", "alice-pw")
    cache.remember(fingerprint, alice)

    def in_the_worker() -> bytes:
        same_key = cache.fingerprint("alice", "alice-pw") == fingerprint
        return repr((len(cache), cache.accepts(fingerprint, alice), same_key)).encode()

    assert helpers.in_forked_child(in_the_worker) == b"(0, False, False)"
    assert cache.accepts(fingerprint, alice)  # the parent's entry stays its own
