"""users.json, groups.json and repositories.json: validation, the original formats, live reload."""

import copy
import json
import logging
import os

import pytest

from auth_service.errors import ConfigError
from auth_service.files.anonymous import parse_repositories
from auth_service.files.live_config import LiveConfig
from auth_service.files.users import parse_users

from .. import helpers

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
    assert rule.decide("a")[0] == (frozenset() if blacklist else {"pull"})
    assert rule.decide("b")[0] == ({"pull"} if blacklist else frozenset())


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


@pytest.fixture
def live(config_dir):
    clock = helpers.FakeClock()
    live = LiveConfig(config_dir / "users.json", config_dir / "repositories.json", clock=clock)
    return live, clock


def test_reload_picks_up_a_change(config_dir, live):
    live, clock = live
    assert live.current().users.get("carol") is None
    document = helpers.users_document()
    document["carol"] = {"pass_hash": HASH}
    helpers.write_json(config_dir / "users.json", document)
    helpers.bump_mtime(config_dir / "users.json")
    assert live.current().users.get("carol") is None  # not checked again within a second
    clock.now += 1.5
    assert live.current().users.get("carol") is not None
    assert live.last_reload_ok


def test_bad_edit_keeps_last_good_config(config_dir, live, caplog):
    live, clock = live
    before = live.current()
    (config_dir / "repositories.json").write_text('{"blacklist": "yes"}')
    helpers.bump_mtime(config_dir / "repositories.json")
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
    helpers.bump_mtime(config_dir / "repositories.json")
    clock.now += 1.5
    assert live.current().anonymous.blacklist is True
    assert live.last_reload_ok


def test_unchanged_files_are_not_parsed_again(config_dir, live, monkeypatch):
    from auth_service.files import live_config

    live, clock = live
    calls = []
    real_load_users = live_config.load_users

    def counting_load_users(*args):
        calls.append(1)
        return real_load_users(*args)

    monkeypatch.setattr(live_config, "load_users", counting_load_users)
    for _ in range(5):
        clock.now += 2
        live.current()
    assert calls == []
    helpers.bump_mtime(config_dir / "users.json")  # the same check does notice a change
    clock.now += 2
    live.current()
    assert calls == [1]


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


# Every kind of configuration error, in each file: (file, how to break it, what the message names).
def _user_key(key, value):
    return lambda files: files["users.json"]["alice"].__setitem__(key, value)


def _group_key(key, value):
    return lambda files: files["groups.json"]["developers"].__setitem__(key, value)


def _anonymous(names):
    return lambda files: files["repositories.json"].__setitem__("repositories", names)


CONFIG_ERRORS = [
    (
        "unknown action in users.json",
        _user_key("repositories", {"team/*": ["pull", "pul"]}),
        ["users.json: ", "user 'alice'", "'team/*'", "unknown action 'pul'"],
    ),
    (
        "unknown key in users.json",
        _user_key("repositores", {}),
        ["users.json: ", "user 'alice'", "unknown key 'repositores'"],
    ),
    (
        "malformed pattern in users.json",
        _user_key("repositories", {"${account}/*": ["pull"]}),
        ["users.json: ", "user 'alice'", "'${account}/*'", "unknown placeholder"],
    ),
    (
        "pattern that matches nothing in users.json",
        _user_key("repositories", {"team//*": ["pull"]}),
        ["users.json: ", "user 'alice'", "'team//*'", "can match no repository name"],
    ),
    (
        "unknown group in users.json",
        _user_key("groups", ["developers", "devs"]),
        ["users.json: ", "user 'alice'", "groups", "unknown group 'devs'"],
    ),
    (
        "unknown action in groups.json",
        _group_key("repositories", {"team/*": ["frob"]}),
        ["groups.json: ", "group 'developers'", "'team/*'", "unknown action 'frob'"],
    ),
    (
        "unknown key in groups.json",
        _group_key("repositores", {}),
        ["groups.json: ", "group 'developers'", "unknown key 'repositores'"],
    ),
    (
        "malformed pattern in groups.json",
        _group_key("repositories", {"team/[a-z]*": ["pull"]}),
        ["groups.json: ", "group 'developers'", "'team/[a-z]*'", "'[' is not allowed"],
    ),
    (
        "catalog not a boolean in groups.json",
        _group_key("catalog", "yes"),
        ["groups.json: ", "group 'developers'", "catalog", "must be true or false"],
    ),
    (
        "malformed pattern in repositories.json",
        _anonymous(["public/*", "pub?ic/["]),
        ["repositories.json: ", "repositories", "'pub?ic/['", "not allowed"],
    ),
    (
        "${user} in repositories.json",
        _anonymous(["${user}/*"]),
        ["repositories.json: ", "repositories", "'${user}/*'", "no meaning for anonymous"],
    ),
    (
        "unknown key in repositories.json",
        lambda files: files["repositories.json"].__setitem__("repos", []),
        ["repositories.json: ", "repos", "unknown key"],
    ),
]


def good_files():
    """A valid set of the three access files, with a group and a pattern in each."""
    users = copy.deepcopy(helpers.users_document())
    users["alice"]["groups"] = ["developers"]
    return {
        "users.json": users,
        "groups.json": {"developers": {"repositories": {"team/*": ["pull"]}, "catalog": False}},
        "repositories.json": {"blacklist": False, "repositories": ["public/*"]},
    }


def write_files(config_dir, files):
    for name, document in files.items():
        helpers.write_json(config_dir / name, document)
        helpers.bump_mtime(config_dir / name)


@pytest.mark.parametrize(("case", "breaks", "names"), CONFIG_ERRORS)
def test_config_error_at_start_up(config_dir, make_app, case, breaks, names):
    files = good_files()
    write_files(config_dir, files)
    make_app()  # the good files start
    breaks(files)
    write_files(config_dir, files)
    with pytest.raises(ConfigError) as caught:
        make_app()
    message = str(caught.value)
    assert message.startswith(str(config_dir)), message
    for part in names:
        assert part in message, (case, message)


@pytest.mark.parametrize(("case", "breaks", "names"), CONFIG_ERRORS)
def test_config_error_at_reload(config_dir, case, breaks, names, caplog):
    files = good_files()
    write_files(config_dir, files)
    clock = helpers.FakeClock()
    live = LiveConfig(config_dir / "users.json", config_dir / "repositories.json", clock=clock)
    before = live.current()
    assert [g.name for g in before.users.get("alice").groups] == ["developers"]
    breaks(files)
    write_files(config_dir, files)
    clock.now += 1.5
    with caplog.at_level(logging.ERROR):
        assert live.current() is before  # the last good config keeps serving
    assert not live.last_reload_ok
    for part in names:
        assert part in caplog.text, (case, caplog.text)
