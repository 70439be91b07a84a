"""groups.json: parsing, membership in users.json, and the files loaded and reloaded together."""

import pytest

from auth_service.access.policy import grant_access
from auth_service.access.scopes import parse_scopes
from auth_service.errors import ConfigError
from auth_service.files.groups import load_groups, parse_groups
from auth_service.files.live_config import LiveConfig
from auth_service.files.users import parse_users

from .. import helpers

HASH = helpers.hash_password("pw")
GROUPS_PATH = helpers.Path("groups.json")


def test_groups_json_format():
    groups = parse_groups(
        GROUPS_PATH,
        {
            "developers": {"repositories": {"team/*": ["pull", "push"]}, "catalog": False},
            "auditors": {"catalog": True},
        },
    )
    assert groups["developers"].repositories == {"team/*": {"pull", "push"}}
    assert groups["developers"].catalog is False
    assert groups["auditors"].repositories == {}
    assert groups["auditors"].catalog is True


def test_missing_groups_json_means_no_groups(tmp_path):
    assert load_groups(tmp_path / "groups.json") == {}


def test_users_name_their_groups():
    groups = parse_groups(GROUPS_PATH, {"a": {}, "b": {}})
    users = parse_users(
        helpers.Path("users.json"),
        {"alice": {"pass_hash": HASH, "groups": ["b", "a", "b"]}, "bob": {"pass_hash": HASH}},
        groups=groups,
    )
    assert [g.name for g in users.get("alice").groups] == ["b", "a"]
    assert users.get("bob").groups == ()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "groups.json: must be a JSON object"),
        ({"dev": []}, "groups.json: group 'dev': must be an object"),
        ({"": {}}, "groups.json: group '': group names must be non-empty"),
        ({"dev": {"repositores": {}}}, "groups.json: group 'dev': unknown key 'repositores'"),
        ({"dev": {"pass_hash": HASH}}, "group 'dev': unknown key 'pass_hash'"),
        ({"dev": {"repositories": []}}, "group 'dev': repositories: must be an object"),
        (
            {"dev": {"repositories": {"team/*": ["pul"]}}},
            "group 'dev': repositories: 'team/*': unknown action 'pul'",
        ),
        (
            {"dev": {"repositories": {"team/*": "pull"}}},
            "group 'dev': repositories: 'team/*': must be a list of actions",
        ),
        (
            {"dev": {"repositories": {"${team}/*": ["pull"]}}},
            "group 'dev': repositories: '${team}/*': unknown placeholder '${team}'",
        ),
        ({"dev": {"catalog": "yes"}}, "group 'dev': catalog: must be true or false"),
    ],
)
def test_bad_groups_json(document, message):
    with pytest.raises(ConfigError) as caught:
        parse_groups(GROUPS_PATH, document)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("groups", "entry", "message"),
    [
        ({}, {"groups": ["devs"]}, "user 'alice': groups: unknown group 'devs' (there is no"),
        (
            {"developers": {}},
            {"groups": ["devs"]},
            "user 'alice': groups: unknown group 'devs' (groups.json defines: developers)",
        ),
        ({}, {"groups": "devs"}, "user 'alice': groups: must be a list of group names"),
        ({}, {"groups": [1]}, "user 'alice': groups: must be a list of group names"),
    ],
)
def test_bad_membership(groups, entry, message):
    with pytest.raises(ConfigError) as caught:
        parse_users(
            helpers.Path("users.json"),
            {"alice": {"pass_hash": HASH, **entry}},
            groups=parse_groups(GROUPS_PATH, groups),
        )
    assert str(caught.value).startswith("users.json: ")
    assert message in str(caught.value)


def pushable(live, user_name, repository):
    files = live.current()
    [result] = grant_access(
        files.users.get(user_name),
        parse_scopes([f"repository:{repository}:push"]),
        files.anonymous,
    )
    return result.actions == ("push",)


def test_groups_json_appears_changes_and_goes(config_dir):
    """groups.json is read with the other files: created, edited and removed while serving."""
    clock = helpers.FakeClock()
    users_path, groups_path = config_dir / "users.json", config_dir / "groups.json"
    live = LiveConfig(users_path, config_dir / "repositories.json", clock=clock)
    assert not pushable(live, "bob", "team/tool")

    # A new group and a user naming it: both files must be read together.
    helpers.write_json(groups_path, {"developers": {"repositories": {"team/*": ["push"]}}})
    users = helpers.users_document()
    users["bob"] = {**users["bob"], "groups": ["developers"]}
    helpers.write_json(users_path, users)
    helpers.bump_mtime(users_path)
    clock.now += 1.5
    assert pushable(live, "bob", "team/tool")

    helpers.write_json(groups_path, {"developers": {"repositories": {"team/*": ["pull"]}}})
    helpers.bump_mtime(groups_path)
    clock.now += 1.5
    assert not pushable(live, "bob", "team/tool")
    assert live.last_reload_ok

    # Removing groups.json while bob still names a group is a broken config: the last good stays.
    groups_path.unlink()
    clock.now += 1.5
    before = live.current()
    assert not live.last_reload_ok
    assert [g.name for g in before.users.get("bob").groups] == ["developers"]
