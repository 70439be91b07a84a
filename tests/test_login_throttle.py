"""Failed-login throttling: a burst, then a rate; per address and user; success forgives."""

from __future__ import annotations

import pytest

from auth_service.login_throttle import LocalStore, LoginThrottle, Throttled

from . import helpers


def _throttle(burst: int = 3, per_minute: int = 6) -> tuple[LoginThrottle, helpers.FakeClock]:
    clock = helpers.FakeClock()
    return LoginThrottle(burst, per_minute, LocalStore(), clock=clock), clock


def test_a_burst_then_one_check_per_refill() -> None:
    throttle, clock = _throttle(burst=3, per_minute=6)  # one check every 10 s
    for _ in range(3):
        throttle.check("10.0.0.1", "alice")
        throttle.take("10.0.0.1", "alice")
    with pytest.raises(Throttled) as refused:
        throttle.take("10.0.0.1", "alice")
    assert refused.value.retry_after == 10
    with pytest.raises(Throttled):
        throttle.check("10.0.0.1", "alice")
    clock.now += 4
    with pytest.raises(Throttled) as refused:
        throttle.check("10.0.0.1", "alice")
    assert refused.value.retry_after == 6
    clock.now += 6
    throttle.take("10.0.0.1", "alice")  # one refilled: one check
    with pytest.raises(Throttled):
        throttle.take("10.0.0.1", "alice")


def test_other_addresses_and_other_users_are_unaffected() -> None:
    throttle, _ = _throttle(burst=2)
    for _ in range(2):
        throttle.take("10.0.0.1", "alice")
    with pytest.raises(Throttled):
        throttle.check("10.0.0.1", "alice")
    throttle.check("10.0.0.2", "alice")
    throttle.check("10.0.0.1", "bob")


def test_the_right_password_forgives() -> None:
    throttle, _ = _throttle(burst=2)
    throttle.take("10.0.0.1", "alice")
    throttle.forgive("10.0.0.1", "alice")
    throttle.take("10.0.0.1", "alice")
    throttle.take("10.0.0.1", "alice")
    with pytest.raises(Throttled):
        throttle.take("10.0.0.1", "alice")


def test_a_burst_of_zero_turns_it_off() -> None:
    throttle, _ = _throttle(burst=0)
    for _ in range(100):
        throttle.take("10.0.0.1", "alice")
    throttle.check("10.0.0.1", "alice")


def test_the_local_store_is_bounded() -> None:
    store = LocalStore(max_entries=2)
    for key in "abc":
        store.update(key, lambda value: b"x", ttl=60)
    assert store.get("a") is None
    assert store.get("b") == store.get("c") == b"x"
