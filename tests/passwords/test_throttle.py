"""Failed-login throttling: a burst, then a rate; per address and user; success forgives.

Each test runs twice: on this instance's own records, and on records in a real Redis (the
Lua scripts of auth_service.shared.buckets, on the test's clock instead of Redis's): the same
answers from both.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from auth_service.passwords.throttle import (
    Buckets,
    BucketStore,
    LocalStore,
    LoginThrottle,
    Throttled,
)
from auth_service.shared.buckets import RedisBuckets
from auth_service.shared.connection import RedisConnection

from .. import helpers

# Where a test's throttle keeps its records, given the test's clock.
Records = Callable[[helpers.FakeClock], BucketStore | Buckets]


def _local(clock: helpers.FakeClock) -> BucketStore:
    return LocalStore()


@pytest.fixture(params=["local", "redis"])
def records(request: pytest.FixtureRequest) -> Records:
    if request.param == "local":
        return _local
    server = request.getfixturevalue("redis_server")
    connection = RedisConnection(server.url, 2.0)

    def fresh(clock: helpers.FakeClock) -> Buckets:
        server.client().flushall()  # each throttle starts with no records, as a LocalStore()
        return RedisBuckets(connection, clock=clock)

    return fresh


def _throttle(
    records: Records, burst: int = 3, per_minute: int = 6
) -> tuple[LoginThrottle, helpers.FakeClock]:
    clock = helpers.FakeClock()
    return LoginThrottle(burst, per_minute, records(clock), clock=clock), clock


def test_a_burst_then_one_check_per_refill(records: Records) -> None:
    throttle, clock = _throttle(records, burst=3, per_minute=6)  # one check every 10 s
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


def test_other_addresses_and_other_users_are_unaffected(records: Records) -> None:
    throttle, _ = _throttle(records, burst=2)
    for _ in range(2):
        throttle.take("10.0.0.1", "alice")
    with pytest.raises(Throttled):
        throttle.check("10.0.0.1", "alice")
    throttle.check("10.0.0.2", "alice")
    throttle.check("10.0.0.1", "bob")


def test_the_right_password_forgives(records: Records) -> None:
    throttle, _ = _throttle(records, burst=2)
    throttle.take("10.0.0.1", "alice")
    throttle.forgive("10.0.0.1", "alice")
    throttle.take("10.0.0.1", "alice")
    throttle.take("10.0.0.1", "alice")
    with pytest.raises(Throttled):
        throttle.take("10.0.0.1", "alice")


def test_a_burst_of_zero_turns_it_off(records: Records) -> None:
    throttle, _ = _throttle(records, burst=0)
    for _ in range(100):
        throttle.take("10.0.0.1", "alice")
    throttle.check("10.0.0.1", "alice")


def test_the_local_store_is_bounded() -> None:
    store = LocalStore(max_entries=2)
    for key in "abc":
        store.update([key], lambda values: [b"x"], [60])
    assert store.get("a") is None
    assert store.get("b") == store.get("c") == b"x"


# --- the bucket per address, across user names ---


def _sprayer_throttle(
    records: Records, address_burst: int = 5, address_per_minute: int = 6, burst: int = 3
) -> tuple[LoginThrottle, helpers.FakeClock]:
    clock = helpers.FakeClock()
    throttle = LoginThrottle(
        burst,
        6,
        records(clock),
        clock=clock,
        address_burst=address_burst,
        address_per_minute=address_per_minute,
    )
    return throttle, clock


def _fail(throttle: LoginThrottle, address: str, username: str) -> None:
    """A wrong password, as the login path spends it: check, then take."""
    throttle.check(address, username)
    throttle.take(address, username)


def test_a_sprayer_of_many_names_is_held_to_the_address_burst_then_its_rate(
    records: Records,
) -> None:
    # One check every 10 s per address.
    throttle, clock = _sprayer_throttle(records, address_burst=5, address_per_minute=6)
    names = iter(f"user{n}" for n in range(1000))
    for _ in range(5):
        _fail(throttle, "10.0.0.1", next(names))  # each name's own bucket is full
    with pytest.raises(Throttled) as refused:
        throttle.check("10.0.0.1", next(names))
    assert refused.value.retry_after == 10
    with pytest.raises(Throttled):
        throttle.take("10.0.0.1", "yet-another")
    # Over 100 s: the burst spent, then one check per refill, whatever the names.
    checks = 5
    for _ in range(100):
        clock.now += 1
        try:
            _fail(throttle, "10.0.0.1", next(names))
            checks += 1
        except Throttled:
            pass
    assert checks == 5 + 10
    # Other addresses are not held.
    _fail(throttle, "10.0.0.2", "user0")


def test_correct_logins_cost_an_address_nothing(records: Records) -> None:
    throttle, _ = _sprayer_throttle(records, address_burst=3)
    for n in range(50):  # an office behind one NAT address
        throttle.check("192.0.2.1", f"user{n}")
        throttle.take("192.0.2.1", f"user{n}")
        throttle.forgive("192.0.2.1", f"user{n}")
    for n in range(3):  # its whole burst of failures is still there
        _fail(throttle, "192.0.2.1", f"typo{n}")
    with pytest.raises(Throttled):
        throttle.check("192.0.2.1", "typo3")


def test_the_right_password_gives_back_one_address_token_not_the_bucket(
    records: Records,
) -> None:
    """A sprayer who owns one account can't refill his address's budget by logging in."""
    throttle, _ = _sprayer_throttle(records, address_burst=5)
    for n in range(4):
        _fail(throttle, "10.0.0.1", f"victim{n}")
    throttle.check("10.0.0.1", "own-account")
    throttle.take("10.0.0.1", "own-account")
    throttle.forgive("10.0.0.1", "own-account")
    _fail(throttle, "10.0.0.1", "victim4")  # the one token left before the login
    with pytest.raises(Throttled):
        throttle.check("10.0.0.1", "victim5")
    # And the pair's own record is still emptied, as before.
    throttle2, _ = _sprayer_throttle(records, address_burst=100, burst=2)
    _fail(throttle2, "10.0.0.1", "alice")
    _fail(throttle2, "10.0.0.1", "alice")
    with pytest.raises(Throttled):
        throttle2.check("10.0.0.1", "alice")
    throttle2.forgive("10.0.0.1", "alice")
    _fail(throttle2, "10.0.0.1", "alice")


def test_retry_after_is_the_longer_wait_of_the_two_buckets(records: Records) -> None:
    # The pair refills one in 10 s, the address one in 60 s.
    throttle, clock = _sprayer_throttle(records, address_burst=1, address_per_minute=1, burst=1)
    _fail(throttle, "10.0.0.1", "alice")
    with pytest.raises(Throttled) as both_empty:
        throttle.check("10.0.0.1", "alice")
    assert both_empty.value.retry_after == 60
    with pytest.raises(Throttled) as address_empty:
        throttle.take("10.0.0.1", "bob")
    assert address_empty.value.retry_after == 60
    clock.now += 30
    with pytest.raises(Throttled) as refused:
        throttle.check("10.0.0.1", "alice")
    assert refused.value.retry_after == 30


def test_a_refused_take_spends_from_neither_bucket(records: Records) -> None:
    throttle, _ = _sprayer_throttle(records, address_burst=4, burst=1)
    _fail(throttle, "10.0.0.1", "alice")
    for _ in range(5):  # alice's pair is empty: refused, and the address pays nothing for it
        with pytest.raises(Throttled):
            throttle.take("10.0.0.1", "alice")
    for n in range(3):
        _fail(throttle, "10.0.0.1", f"other{n}")
    with pytest.raises(Throttled):
        throttle.check("10.0.0.1", "other3")


def test_the_address_bucket_is_its_own_record_and_zero_turns_it_off() -> None:
    store = LocalStore()
    throttle = LoginThrottle(3, 6, store, address_burst=10)
    # An address and a (address, user) pair whose joined text looks alike keep apart.
    throttle.take("10.0.0.1", "")
    assert len(store._values) == 2
    throttle.take("10.0.0.1\0", "")
    assert len(store._values) == 4
    off, _ = _sprayer_throttle(_local, address_burst=0)
    for n in range(100):
        _fail(off, "10.0.0.1", f"user{n}")
