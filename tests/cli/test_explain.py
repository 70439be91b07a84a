"""``auth-service explain``: one line per resource, with the file and key that decided it."""

import json

import pytest

from .. import helpers
from .test_cli import run

USERS = {
    "alice": {
        "repositories": {"team/a*": ["pull", "push"], "team/frozen": [], "*": ["pull"]},
        "groups": ["developers"],
    },
    "dave": {"repositories": {"team/*": ["pull"]}, "groups": ["developers", "ops"]},
    "erin": {"repositories": {}},
}
GROUPS = {
    "developers": {"repositories": {"${user}/*": ["*"], "team/*": ["push"]}, "catalog": False},
    "ops": {"repositories": {}, "catalog": True},
}
REPOSITORIES = {"blacklist": False, "repositories": ["public/*"]}


@pytest.fixture
def explain(config_dir):
    users = {
        name: {"pass_hash": helpers.hash_password("pw"), **entry} for name, entry in USERS.items()
    }
    helpers.write_json(config_dir / "users.json", users)
    helpers.write_json(config_dir / "groups.json", GROUPS)
    helpers.write_json(config_dir / "repositories.json", REPOSITORIES)

    def explain_with(*args):
        return run(config_dir, "explain", *args)

    return explain_with


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["alice", "repository:team/app:pull,push"],
            'repository:team/app: pull,push  (users.json: alice: "team/a*")',
        ),
        (
            ["alice", "repository:team/frozen:pull"],
            'repository:team/frozen: nothing  (users.json: alice: "team/frozen")',
        ),
        (
            ["alice", "repository:alice/tool:*"],
            'repository:alice/tool: *  (groups.json: developers: "${user}/*")',
        ),
        (
            ["alice", "repository:other/x:pull,push"],
            'repository:other/x: pull  (users.json: alice: "*")',
        ),
        (
            ["dave", "repository:team/app:pull,push"],
            'repository:team/app: pull,push  (users.json: dave: "team/*"; '
            'groups.json: developers: "team/*")',
        ),
        (
            ["dave", "repository:public/app:pull"],
            'repository:public/app: pull  (repositories.json: whitelist: "public/*")',
        ),
        (
            ["dave", "repository:other/x:pull"],
            "repository:other/x: nothing  (anonymous policy: not listed)",
        ),
        (
            ["--anonymous", "repository:public/app:pull,push"],
            'repository:public/app: pull  (repositories.json: whitelist: "public/*")',
        ),
        (
            ["--anonymous", "repository:team/app:pull"],
            "repository:team/app: nothing  (anonymous policy: not listed)",
        ),
        (["dave", "registry:catalog:*"], 'registry:catalog: *  (groups.json: ops: "catalog")'),
        (
            ["erin", "registry:catalog:*"],
            'registry:catalog: nothing  (catalog: needs "catalog": true on the user or a group)',
        ),
    ],
)
def test_explain_one_line(explain, args, line):
    code, output = explain(*args)
    assert code == 0, output
    assert output.splitlines() == [line]


def test_one_line_per_resource_in_order(explain):
    code, output = explain(
        "alice", "repository:team/app:push repository:bob/x:pull", "registry:catalog:*"
    )
    assert code == 0, output
    assert [line.split("  (")[0] for line in output.splitlines()] == [
        "repository:team/app: push",
        "repository:bob/x: pull",
        "registry:catalog: nothing",
    ]


def test_json_has_the_same_decisions_as_the_lines(explain):
    scopes = ["repository:team/app:pull,push", "registry:catalog:*"]
    code, output = explain("dave", "--json", *scopes)
    assert code == 0, output
    assert json.loads(output) == [
        {
            "type": "repository",
            "name": "team/app",
            "actions": ["pull", "push"],
            "reason": 'users.json: dave: "team/*"; groups.json: developers: "team/*"',
        },
        {
            "type": "registry",
            "name": "catalog",
            "actions": ["*"],
            "reason": 'groups.json: ops: "catalog"',
        },
    ]


def test_reasons_naming_a_group_are_escaped(explain, config_dir):
    """User names are checked when loaded; a group name (groups.json) can still hold anything."""
    group = "ops\x1b]0;owned\x07"
    helpers.write_json(
        config_dir / "groups.json", {**GROUPS, group: {"repositories": {"x/*": ["pull"]}}}
    )
    users = json.loads((config_dir / "users.json").read_text())
    users["erin"]["groups"] = [group]
    helpers.write_json(config_dir / "users.json", users)
    code, output = explain("erin", "repository:x/app:pull")
    assert code == 0, output
    assert output == 'repository:x/app: pull  (groups.json: ops\\x1b]0;owned\\x07: "x/*")\n'
    code, output = explain("erin", "repository:x/app:pull", "--json")
    assert code == 0, output
    assert set(output) - set(filter(str.isprintable, output)) == {"\n"}
    assert json.loads(output)[0]["reason"] == f'groups.json: {group}: "x/*"'


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["mallory", "repository:team/app:pull"], 1, "unknown user 'mallory'"),
        (["mal\x1blory", "repository:team/app:pull"], 1, "unknown user 'mal\\x1blory'"),
        (["alice"], 2, "give at least one scope"),
        (["alice", "repository:Team/App:pull"], 2, "is not a valid resource name"),
        ([], 2, "Missing argument"),
    ],
)
def test_explain_errors(explain, args, code, message):
    exit_code, output = explain(*args)
    assert exit_code == code
    assert message in output


def test_a_configuration_error_is_one_escaped_line(explain, config_dir):
    group = "ops\x1b]0;owned\x07"
    helpers.write_json(config_dir / "groups.json", {group: {"repositories": {}}})
    code, output = explain("erin", "repository:x/app:pull")
    assert code == 1
    assert output.endswith("(groups.json defines: ops\\x1b]0;owned\\x07)\n")
    assert len(output.splitlines()) == 1 and "\x1b" not in output
