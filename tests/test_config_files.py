"""users.json and repositories.json: validation, the original formats, and live reload."""

import json
import logging
import os

import pytest

from auth_service.errors import ConfigError
from auth_service.live_config import LiveConfig
from auth_service.repositories import parse_repositories
from auth_service.users import parse_users

from . import helpers

HASH = helpers.hash_password("pw")


def parse_one_user(entry, name="alice"):
    return parse_users(helpers.Path("users.json"), {name: entry}).get(name)


def test_original_users_json():
    user = parse_one_user(
        {"pass_hash": HASH, "repositories": {"team/app": ["pull", "push"], "*": ["pull"]}}
    )
    assert user.repositories == {"team/app": {"pull", "push"}, "*": {"pull"}}
    assert user.catalog is False


@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"])
def test_bcrypt_variants_verify(prefix):
    pass_hash = prefix + HASH[4:]
    users = parse_users(helpers.Path("users.json"), {"alice": {"pass_hash": pass_hash}})
    assert users.verify_password("alice", "pw") is not None
    assert users.verify_password("alice", "wrong") is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "users.json: must be a JSON object"),
        ({"alice": "x"}, "user 'alice': must be an object"),
        ({"alice": {}}, "user 'alice': pass_hash: is not a bcrypt hash"),
        ({"alice": {"pass_hash": "{SHA}abc"}}, "user 'alice': pass_hash: is not a bcrypt hash"),
        ({"alice": {"pass_hash": "$1$abc$def"}}, "pass_hash: is not a bcrypt hash"),
        ({"alice": {"pass_hash": HASH[:-1]}}, "pass_hash: is not a bcrypt hash"),
        ({"alice": {"pass_hash": HASH.replace("$04$", "$03$")}}, "bcrypt cost outside"),
        ({"alice": {"pass_hash": HASH, "repositores": {}}}, "user 'alice': unknown key"),
        ({"alice": {"pass_hash": HASH, "repositories": []}}, "user 'alice': repositories:"),
        (
            {"alice": {"pass_hash": HASH, "repositories": {"team/app": "pull"}}},
            "repositories: 'team/app': must be a list of actions",
        ),
        (
            {"alice": {"pass_hash": HASH, "repositories": {"team/app": ["pul"]}}},
            "repositories: 'team/app': unknown action 'pul'",
        ),
        (
            {"alice": {"pass_hash": HASH, "repositories": {"Team/App": ["pull"]}}},
            "repositories: 'Team/App': is not a repository name",
        ),
        ({"alice": {"pass_hash": HASH, "catalog": "yes"}}, "user 'alice': catalog:"),
        ({"a:b": {"pass_hash": HASH}}, "user 'a:b'"),
        ({"": {"pass_hash": HASH}}, "user ''"),
    ],
)
def test_bad_users_json(document, message):
    with pytest.raises(ConfigError) as caught:
        parse_users(helpers.Path("users.json"), document)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("document", "blacklist"),
    [
        ({"backlist": False, "repositories": ["a"]}, False),  # the original's spelling
        ({"backlist": True, "repositories": ["a"]}, True),
        ({"blacklist": True, "repositories": ["a"]}, True),  # was silently ignored before
        ({"blacklist": False, "repositories": ["a"]}, False),
        ({"blacklist": True, "backlist": True, "repositories": ["a"]}, True),
        ({"repositories": ["a"]}, False),
    ],
)
def test_repositories_modes(document, blacklist):
    rule = parse_repositories(helpers.Path("repositories.json"), document)
    assert rule.blacklist is blacklist
    assert rule.actions_for("a") == (frozenset() if blacklist else {"pull"})
    assert rule.actions_for("b") == ({"pull"} if blacklist else frozenset())


def test_backlist_warns(caplog):
    with caplog.at_level(logging.WARNING):
        parse_repositories(
            helpers.Path("repositories.json"), {"backlist": True, "repositories": []}
        )
    assert "backlist" in caplog.text


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"blacklist": True, "backlist": False, "repositories": []}, "backlist: contradicts"),
        ({"blacklist": "yes", "repositories": []}, "blacklist: must be true or false"),
        ({"blacklist": False, "repositories": "a"}, "repositories: must be a list"),
        ({"blacklist": False, "repositories": ["UPPER/Case"]}, "repositories: 'UPPER/Case'"),
        ({"blacklist": False, "repos": []}, "repos: unknown key"),
        ([], "must be a JSON object"),
    ],
)
def test_bad_repositories_json(document, message):
    with pytest.raises(ConfigError) as caught:
        parse_repositories(helpers.Path("repositories.json"), document)
    assert message in str(caught.value)
    assert str(caught.value).startswith("repositories.json")


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def bump_mtime(path):
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def live(config_dir):
    clock = FakeClock()
    live = LiveConfig(config_dir / "users.json", config_dir / "repositories.json", clock=clock)
    return live, clock


def test_reload_picks_up_a_change(config_dir, live):
    live, clock = live
    assert live.current().users.get("carol") is None
    document = helpers.users_document()
    document["carol"] = {"pass_hash": HASH}
    helpers.write_json(config_dir / "users.json", document)
    bump_mtime(config_dir / "users.json")
    assert live.current().users.get("carol") is None  # not checked again within a second
    clock.now += 1.5
    assert live.current().users.get("carol") is not None
    assert live.last_reload_ok


def test_bad_edit_keeps_last_good_config(config_dir, live, caplog):
    live, clock = live
    before = live.current()
    (config_dir / "repositories.json").write_text('{"blacklist": "yes"}')
    bump_mtime(config_dir / "repositories.json")
    clock.now += 1.5
    with caplog.at_level(logging.ERROR):
        assert live.current() is before
    assert "repositories.json: blacklist: must be true or false" in caplog.text
    assert not live.last_reload_ok
    caplog.clear()
    clock.now += 1.5
    with caplog.at_level(logging.ERROR):
        assert live.current() is before
    assert caplog.text == ""  # logged once per broken version, not once a second

    helpers.write_json(config_dir / "repositories.json", {"blacklist": True, "repositories": []})
    bump_mtime(config_dir / "repositories.json")
    clock.now += 1.5
    assert live.current().anonymous.blacklist is True
    assert live.last_reload_ok


def test_unchanged_files_are_not_parsed_again(config_dir, live, monkeypatch):
    live, clock = live
    calls = []
    monkeypatch.setattr(live, "_load", lambda: calls.append(1))
    for _ in range(5):
        clock.now += 2
        live.current()
    assert calls == []


def test_atomic_replacement_is_noticed(config_dir, live):
    """Editors and tools replace files by rename: a new inode counts as a change."""
    live, clock = live
    document = helpers.users_document()
    document["dave"] = {"pass_hash": HASH}
    tmp = config_dir / "users.json.tmp"
    tmp.write_text(json.dumps(document))
    os.replace(tmp, config_dir / "users.json")
    clock.now += 1.5
    assert live.current().users.get("dave") is not None
