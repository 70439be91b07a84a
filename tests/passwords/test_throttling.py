"""Throttled logins and bounded bcrypt, as clients see them: 429 and 503 with Retry-After."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask

from auth_service.files import users as users_module
from auth_service.files.settings import load_settings

from .. import helpers

QUERY = f"/v2/token?service={helpers.SERVICE}&scope=repository:team/app:pull"


def _get(app: Flask, user: str, password: str, address: str = "192.0.2.1") -> Any:
    return app.test_client().get(
        QUERY, headers=helpers.basic(user, password), environ_base={"REMOTE_ADDR": address}
    )


def test_after_the_burst_a_guesser_gets_429_even_with_the_right_password(
    make_app: Any,
) -> None:
    app = make_app(LOGIN_THROTTLE_BURST=3, LOGIN_THROTTLE_PER_MINUTE=2)
    for _ in range(3):
        assert _get(app, "alice", "guess").status_code == 401
    refused = _get(app, "alice", "guess")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "30"
    assert refused.get_json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert "token" not in refused.get_json()
    # A correct guess now would be a free oracle: it is refused the same way.
    assert _get(app, "alice", "alice-pw").status_code == 429


def test_no_lock_out_the_owner_elsewhere_and_other_users_log_in(make_app: Any) -> None:
    app = make_app(LOGIN_THROTTLE_BURST=2)
    for _ in range(3):
        _get(app, "alice", "guess", address="198.51.100.7")
    assert _get(app, "alice", "guess", address="198.51.100.7").status_code == 429
    assert _get(app, "alice", "alice-pw", address="192.0.2.1").status_code == 200
    assert _get(app, "bob", "bob-pw", address="198.51.100.7").status_code == 200


def test_a_successful_login_forgives_earlier_typos(make_app: Any) -> None:
    app = make_app(LOGIN_THROTTLE_BURST=3, CREDENTIAL_CACHE_SECONDS=0)
    for _ in range(2):
        assert _get(app, "alice", "typo").status_code == 401
    assert _get(app, "alice", "alice-pw").status_code == 200
    for _ in range(3):
        assert _get(app, "alice", "typo").status_code == 401  # a full burst again


def test_32_parallel_right_logins_all_succeed_with_one_bcrypt_check(
    make_app: Any, monkeypatch: Any
) -> None:
    """A `docker compose pull` of many images: parallel requests with one password."""
    app = make_app(LOGIN_THROTTLE_BURST=1, BCRYPT_CONCURRENCY=1, BCRYPT_QUEUE=0)
    checks = []
    real = users_module.bcrypt.checkpw

    def slow_checkpw(password: bytes, hashed: bytes) -> bool:
        checks.append(hashed)
        threading.Event().wait(0.3)  # as slow as a real cost-12 hash
        return real(password, hashed)

    monkeypatch.setattr(users_module.bcrypt, "checkpw", slow_checkpw)
    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(lambda _: _get(app, "alice", "alice-pw").status_code, range(32)))
    assert statuses == [200] * 32
    assert len(checks) == 1


def test_bcrypt_beyond_the_bound_is_answered_503_at_once(make_app: Any, monkeypatch: Any) -> None:
    app = make_app(BCRYPT_CONCURRENCY=1, BCRYPT_QUEUE=0, LOGIN_THROTTLE_BURST=0)
    started, release = helpers.hold_bcrypt(monkeypatch)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(_get, app, "alice", "guess-1")
        assert started.wait(10)
        busy = _get(app, "bob", "guess-2")
        assert busy.status_code == 503
        assert busy.headers["Retry-After"] == "1"
        assert busy.get_json()["errors"][0]["code"] == "UNAVAILABLE"
        # Requests that need no bcrypt are served meanwhile.
        anonymous = app.test_client().get(
            f"/v2/token?service={helpers.SERVICE}&scope=repository:public-image:pull"
        )
        assert anonymous.status_code == 200
        release.set()
        assert first.result(10).status_code == 401


def test_a_sprayer_gets_429_after_the_address_burst_while_others_log_in(make_app: Any) -> None:
    """One password against many names: each name's own bucket is full, the address's is not."""
    app = make_app(LOGIN_THROTTLE_ADDRESS_BURST=5, LOGIN_THROTTLE_ADDRESS_PER_MINUTE=2)
    sprayer = "198.51.100.7"
    statuses = [_get(app, f"name{n}", "Winter2025!", sprayer).status_code for n in range(20)]
    assert statuses == [401] * 5 + [429] * 15
    refused = _get(app, "name99", "Winter2025!", sprayer)
    assert refused.headers["Retry-After"] == "30"
    assert refused.get_json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    # Held for every name, the right password too; other addresses are not.
    assert _get(app, "alice", "alice-pw", sprayer).status_code == 429
    assert _get(app, "alice", "alice-pw", "192.0.2.1").status_code == 200


def test_correct_logins_from_an_address_are_unaffected_while_its_failures_stay_under_the_burst(
    make_app: Any,
) -> None:
    """An office behind one NAT address: many logins, a few typos."""
    app = make_app(LOGIN_THROTTLE_ADDRESS_BURST=3, CREDENTIAL_CACHE_SECONDS=0)
    office = "203.0.113.9"
    assert _get(app, "alice", "typo", office).status_code == 401
    assert _get(app, "bob", "typo", office).status_code == 401
    for _ in range(10):
        for user in ("alice", "bob", "admin"):
            assert _get(app, user, helpers.PASSWORDS[user], office).status_code == 200
    assert _get(app, "admin", "typo", office).status_code == 401  # the third failure
    assert _get(app, "alice", "alice-pw", office).status_code == 429


def test_the_address_bucket_is_on_by_default(config_dir: Any) -> None:
    settings = load_settings(config_dir, environ={})
    assert (settings.login_throttle_address_burst, settings.login_throttle_address_per_minute) == (
        200,
        60,
    )
    env = {"AUTH_SERVICE_LOGIN_THROTTLE_ADDRESS_BURST": "0"}
    assert load_settings(config_dir, environ=env).login_throttle_address_burst == 0
