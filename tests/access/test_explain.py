"""The explain command: one line per resource, with the file and key that decided it."""

import pytest

from auth_service.access.explain import explain_command

from .. import helpers

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
def explain(config_dir, make_app):
    users = {
        name: {"pass_hash": helpers.hash_password("pw"), **entry} for name, entry in USERS.items()
    }
    helpers.write_json(config_dir / "users.json", users)
    helpers.write_json(config_dir / "groups.json", GROUPS)
    helpers.write_json(config_dir / "repositories.json", REPOSITORIES)
    app = make_app()
    app.cli.add_command(explain_command)
    runner = app.test_cli_runner()

    def run(*args):
        return runner.invoke(args=["explain", *args])

    return run


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
    result = explain(*args)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [line]


def test_one_line_per_resource_in_order(explain):
    result = explain(
        "alice", "repository:team/app:push repository:bob/x:pull", "registry:catalog:*"
    )
    assert result.exit_code == 0, result.output
    assert [line.split("  (")[0] for line in result.output.splitlines()] == [
        "repository:team/app: push",
        "repository:bob/x: pull",
        "registry:catalog: nothing",
    ]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["mallory", "repository:team/app:pull"], 1, "unknown user 'mallory'"),
        (["alice"], 2, "give at least one scope"),
        (["alice", "repository:Team/App:pull"], 2, "is not a valid resource name"),
        ([], 2, "Missing argument"),
    ],
)
def test_explain_errors(explain, args, code, message):
    result = explain(*args)
    assert result.exit_code == code
    assert message in result.output
