"""No user given away by bcrypt cost: an unknown name costs what a known user with a wrong
password costs, drawn from the file's mix of costs, and the same every time."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from pathlib import Path

import bcrypt
import pytest

from auth_service.files import users as users_module
from auth_service.files.users import UserDirectory, bcrypt_cost, parse_users

PATH = Path("users.json")

# Made once, with real bcrypt (cost 10: about 60 ms; cost 12: four times that), so the test
# spends no time hashing and the file, hence its mix and key, is the same on every run.
TIMED_USERS = {
    "ten-a": "$2b$10$wY9Ea5o0GXqwYCLFm1vGeOlOr33/oDDvhO6BxWPZKrbsAYFyesOI6",
    "ten-b": "$2b$10$wKdptQrpOCH/PBfvvsSF0eON8soyCgS0pWhKY02biRrtJB7ooc8Wm",
    "twelve": "$2b$12$uTikHV3fvhKT06udoyzv.OcBMydwP2.yfhGAj9O/YTRz5Ta5YCt0i",
}
UNKNOWN_NAMES = [f"ghost-{n}" for n in range(12)]


def _directory(hashes: dict[str, str], target_cost: int | None = None) -> UserDirectory:
    document = {name: {"pass_hash": pass_hash} for name, pass_hash in hashes.items()}
    return parse_users(PATH, document, target_cost)


def _wrong_password_seconds(users: UserDirectory, name: str) -> float:
    """The CPU time of one failed check: the work that makes its answer time, without the
    other processes that share this machine's cores (which wall time would add)."""
    start = time.thread_time()
    assert users.verify_password(name, "not the password") is None
    return time.thread_time() - start


def test_every_known_users_time_is_matched_by_its_costs_share_of_unknown_names() -> None:
    users = _directory(TIMED_USERS)
    assert {n: bcrypt.checkpw(f"{n}-pw".encode(), h.encode()) for n, h in TIMED_USERS.items()}
    for name in ("ten-a", "twelve", "ghost-x"):
        _wrong_password_seconds(users, name)  # warm up: the dummy hashes are made on first use
    known = {name: [_wrong_password_seconds(users, name) for _ in range(3)] for name in TIMED_USERS}
    at_10 = statistics.median(known["ten-a"] + known["ten-b"])
    at_12 = statistics.median(known["twelve"])
    assert at_12 > 2 * at_10  # cost 12 is four times cost 10: the references are apart
    # Between the two, on a ratio scale: a timing within 2x of one reference is near it.
    midpoint = (at_10 * at_12) ** 0.5

    def near(seconds: float) -> int:
        return 12 if seconds > midpoint else 10

    tries = {
        name: [near(_wrong_password_seconds(users, name)) for _ in range(2)]
        for name in UNKNOWN_NAMES
    }
    assert all(first == second for first, second in tries.values()), tries
    like = Counter(first for first, _ in tries.values())
    share = Counter(bcrypt_cost(h.encode()) for h in TIMED_USERS.values())
    for name, timings in known.items():
        cost = near(statistics.median(timings))
        assert cost == bcrypt_cost(TIMED_USERS[name].encode())
        # At least about its share (2/3 and 1/3 of the names): half of it, and one name.
        expected = share[cost] / len(TIMED_USERS) * len(UNKNOWN_NAMES)
        assert like[cost] >= max(1, expected / 2), (name, dict(like))


# --- the per-name choice, deterministically ---


def _fake_hash(cost: int, n: int) -> str:
    """A well-formed hash at ``cost`` nobody's password matches; never checked here."""
    return f"$2b${cost:02d}$" + f"{n:053d}"


def _mixed(counts: dict[int, int], offset: int = 0) -> dict[str, str]:
    hashes, n = {}, offset
    for cost, count in counts.items():
        for _ in range(count):
            hashes[f"user{n}"] = _fake_hash(cost, n)
            n += 1
    return hashes


def test_an_unknown_name_gets_the_same_cost_every_time_in_every_worker() -> None:
    hashes = _mixed({10: 3, 12: 1})
    names = [f"unknown{n}" for n in range(2000)]
    first, second = _directory(hashes), _directory(hashes)  # two workers, or a restart
    assert [first.unknown_name_cost(n) for n in names] == [
        second.unknown_name_cost(n) for n in names
    ]
    assert all(first.unknown_name_cost(n) == first.unknown_name_cost(n) for n in names[:50])


@pytest.mark.parametrize("counts", [{10: 3, 12: 1}, {10: 1, 12: 1}, {12: 5, 10: 2, 14: 1}])
def test_unknown_names_are_spread_over_the_costs_as_the_files_users_are(
    counts: dict[int, int],
) -> None:
    users = _directory(_mixed(counts))
    drawn = Counter(users.unknown_name_cost(f"unknown{n}") for n in range(20000))
    total = sum(counts.values())
    assert set(drawn) == set(counts)
    for cost, count in counts.items():
        assert abs(drawn[cost] / 20000 - count / total) < 0.015, (cost, drawn)


def test_one_cost_in_the_file_is_every_unknown_names_cost() -> None:
    users = _directory(_mixed({11: 4}))
    assert {users.unknown_name_cost(f"unknown{n}") for n in range(500)} == {11}
    assert _directory({}).unknown_name_cost("anyone") == 12  # no users: bcrypt's usual cost


def test_with_a_key_of_the_instance_names_keep_their_cost_across_versions_of_the_file() -> None:
    """As the file converges, unknown names only move to the target cost, as users do."""
    key = b"derived from the signing key"
    names = [f"unknown{n}" for n in range(5000)]
    before = UserDirectory(_users(_mixed({10: 3, 12: 1})), 12, name_key=key)
    # One cost-10 user rehashed to 12 (new salt): 2 at 10, 2 at 12.
    after = UserDirectory(
        _users(_mixed({12: 1}) | _mixed({10: 2}, 1) | _mixed({12: 1}, 3)), 12, name_key=key
    )
    moved = Counter((before.unknown_name_cost(n), after.unknown_name_cost(n)) for n in names)
    assert set(moved) == {(10, 10), (12, 12), (10, 12)}
    assert abs(moved[(10, 12)] / len(names) - 0.25) < 0.03
    other_key = UserDirectory(_users(_mixed({10: 3, 12: 1})), 12, name_key=b"another instance")
    assert [before.unknown_name_cost(n) for n in names] != [
        other_key.unknown_name_cost(n) for n in names
    ]


def _users(hashes: dict[str, str]) -> dict:
    return _directory(hashes).users


def test_known_users_are_checked_at_their_own_cost_whatever_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    users = _directory(_mixed({10: 3, 12: 1}))
    users.verify_password("someone", "wrong")  # the dummy hashes, made with the real bcrypt
    checked: list[int] = []
    monkeypatch.setattr(
        users_module.bcrypt, "checkpw", lambda password, hashed: checked.append(bcrypt_cost(hashed))
    )
    users.verify_password("user3", "wrong")
    users.verify_password("user3", "x" * 73)  # over bcrypt's 72 bytes
    users.verify_password("user3", "nul\0")
    users.verify_password("user0", "x" * 73)
    users.verify_password("ghost", "x" * 73)
    assert checked == [12, 12, 12, 10, users.unknown_name_cost("ghost")]
