"""``auth-service users ...`` and ``hash-password``: edits of users.json that the service accepts,
made atomically under a lock, picked up by the running service."""

import json
import os
import shutil
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bcrypt
import pytest

from auth_service.cli.main import cli
from auth_service.files.users import load_users

from .. import helpers
from .test_cli import run

AUTH_SERVICE = Path(sys.executable).with_name("auth-service")
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "users.json.example"


def add(config_dir, name, password="new-pw", *options):  # noqa: S107
    return run(
        config_dir,
        "users",
        "add",
        name,
        "--password-stdin",
        "--cost",
        "4",
        *options,
        input=password + "\n",
    )


def users_of(config_dir):
    return json.loads((config_dir / "users.json").read_text())


def test_a_user_added_by_the_command_gets_a_token_from_the_running_service(
    make_app, config_dir, signing_cert
):
    client = make_app().test_client()
    query = f"/v2/token?service={helpers.SERVICE}&scope=repository:team/app:pull,push"
    assert client.get(query, headers=helpers.basic("carol", "carol-pw")).status_code == 401

    code, output = add(config_dir, "carol", "carol-pw", "--grant", "team/app=pull,push")
    assert code == 0, output
    service = client.application.extensions["auth_service"]
    service.live.check_at_next_call()  # don't wait the second between stat checks

    response = client.get(query, headers=helpers.basic("carol", "carol-pw"))
    assert response.status_code == 200, response.get_data(as_text=True)
    claims = helpers.verify_token(response.get_json()["token"], signing_cert)
    assert claims["sub"] == "carol"
    assert helpers.access_of(claims) == {("repository", "team/app"): {"pull", "push"}}


def test_twenty_concurrent_adds_leave_twenty_users(config_dir):
    env = {**os.environ, "AUTH_SERVICE_CONFIG_DIR": str(config_dir)}
    names = [f"user{i}" for i in range(20)]

    def add_in_a_process(name):
        command = [AUTH_SERVICE, "users", "add", name, "--password-stdin", "--cost", "4"]
        return subprocess.run(
            command, input=f"{name}-pw\n", env=env, capture_output=True, text=True, timeout=120
        )

    with ThreadPoolExecutor(len(names)) as pool:
        results = list(pool.map(add_in_a_process, names))
    assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results]
    directory = load_users(config_dir / "users.json")
    assert set(directory.users) == set(helpers.USERS) | set(names)
    assert directory.verify_password("user7", "user7-pw") is not None


def test_a_crash_before_the_rename_leaves_the_old_file_and_no_temporary_file(
    config_dir, monkeypatch
):
    before = (config_dir / "users.json").read_bytes()

    def crash(source, target):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    code, output = add(config_dir, "carol")
    assert code != 0 and "simulated crash" in output
    assert (config_dir / "users.json").read_bytes() == before
    assert [p.name for p in config_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_list_shows_grants_and_never_a_hash(config_dir):
    hashes = [entry["pass_hash"] for entry in users_of(config_dir).values()]
    code, text = run(config_dir, "users", "list")
    assert code == 0, text
    code, as_json = run(config_dir, "users", "list", "--json")
    assert code == 0, as_json
    for output in (text, as_json):
        assert "$2b$" not in output and not any(h in output for h in hashes)
    assert (
        "bob  groups: -  catalog: no  refresh tokens: yes  repositories: team/app=pull *=pull"
        in text.splitlines()
    )
    listed = {user["name"]: user for user in json.loads(as_json)}
    assert listed.keys() == helpers.USERS.keys()
    assert listed["admin"] == {
        "name": "admin",
        "groups": [],
        "repositories": {"*": ["*"]},
        "catalog": True,
        "refresh_tokens": True,
    }


def test_no_option_takes_a_password():
    for path in (["users", "add"], ["users", "set"], ["users", "passwd"], ["hash-password"]):
        command = cli
        for name in path:
            command = command.commands[name]
        password_params = [p for p in command.params if "pass" in p.name]
        assert [p.name for p in password_params] == (
            ["password_stdin"] if path[-1] != "set" else []
        )
        assert all(p.is_flag for p in password_params)


def test_a_password_given_as_an_argument_is_refused(config_dir):
    before = (config_dir / "users.json").read_bytes()
    code, output = run(config_dir, "users", "add", "carol", "secret-pw", "--cost", "4")
    assert code == 2 and "unexpected extra argument" in output.lower()
    assert "carol" not in users_of(config_dir)
    assert (config_dir / "users.json").read_bytes() == before


def test_the_prompt_asks_twice(config_dir):
    code, output = run(
        config_dir, "users", "add", "carol", "--cost", "4", input="typed-pw\ntyped-pw\n"
    )
    assert code == 0, output
    assert "typed-pw" not in output  # hidden
    assert load_users(config_dir / "users.json").verify_password("carol", "typed-pw")


def test_the_prompt_refuses_a_mismatch(config_dir):
    code, output = run(config_dir, "users", "add", "carol", "--cost", "4", input="one\ntwo\n")
    assert code != 0 and "do not match" in output
    assert "carol" not in users_of(config_dir)


@pytest.mark.parametrize(
    ("password", "complaint"),
    [("x" * 73, "73 bytes"), ("ab\0cd", "NUL"), ("", "empty"), ("é" * 37, "74 bytes")],
)
def test_passwords_bcrypt_cannot_hash_are_refused(config_dir, password, complaint):
    before = (config_dir / "users.json").read_bytes()
    code, output = add(config_dir, "carol", password)
    assert code != 0 and complaint in output
    assert (config_dir / "users.json").read_bytes() == before


def test_a_72_byte_password_works(config_dir):
    password = "é" * 36
    assert add(config_dir, "carol", password)[0] == 0
    assert load_users(config_dir / "users.json").verify_password("carol", password)


def test_stdin_gives_the_first_line_only(config_dir):
    code, output = add(config_dir, "carol", "first line\nsecond line")
    assert code == 0, output
    directory = load_users(config_dir / "users.json")
    assert directory.verify_password("carol", "first line")
    assert not directory.verify_password("carol", "first line\n")


def test_adding_an_existing_user_fails_in_one_line(config_dir):
    before = (config_dir / "users.json").read_bytes()
    code, output = add(config_dir, "alice")
    assert code == 1
    assert (
        output == "Error: user 'alice' already exists (use `users passwd` to change the password)\n"
    )
    assert (config_dir / "users.json").read_bytes() == before


@pytest.mark.parametrize("command", ["passwd", "remove"])
def test_a_missing_user_fails_in_one_line(config_dir, command):
    options = ["--password-stdin"] if command == "passwd" else []
    code, output = run(config_dir, "users", command, "nobody", *options, input="pw\n")
    assert code == 1 and output == "Error: no user 'nobody'\n"


def test_passwd_changes_only_that_hash(config_dir):
    before = users_of(config_dir)
    code, output = run(
        config_dir, "users", "passwd", "bob", "--password-stdin", "--cost", "4", input="new\n"
    )
    assert code == 0, output
    after = users_of(config_dir)
    assert after["bob"]["pass_hash"] != before["bob"]["pass_hash"]
    assert {**after["bob"], "pass_hash": None} == {**before["bob"], "pass_hash": None}
    assert {k: v for k, v in after.items() if k != "bob"} == {
        k: v for k, v in before.items() if k != "bob"
    }
    directory = load_users(config_dir / "users.json")
    assert directory.verify_password("bob", "new")
    assert not directory.verify_password("bob", helpers.PASSWORDS["bob"])


def test_remove(config_dir):
    before = users_of(config_dir)
    code, output = run(config_dir, "users", "remove", "bob")
    assert code == 0 and "removed" in output
    del before["bob"]
    assert users_of(config_dir) == before


def test_add_writes_grants_groups_and_catalog(config_dir):
    helpers.write_json(config_dir / "groups.json", {"ops": {"repositories": {"*": ["pull"]}}})
    code, output = add(
        config_dir,
        "carol",
        "pw",
        "--grant",
        "team/*=pull,push",
        "--grant",
        "team/*=delete",
        "--grant",
        "team/secret=",
        "--group",
        "ops",
        "--catalog",
    )
    assert code == 0, output
    entry = users_of(config_dir)["carol"]
    assert bcrypt.checkpw(b"pw", entry.pop("pass_hash").encode())
    assert entry == {
        "groups": ["ops"],
        "repositories": {"team/*": ["pull", "push", "delete"], "team/secret": []},
        "catalog": True,
    }


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        (["--grant", "team/app=pull,pusj"], "--grant: user 'carol': repositories: 'team/app': "),
        (["--grant", "Team/App=pull"], "--grant: user 'carol': repositories: 'Team/App': "),
        (["--grant", "${account}/*=pull"], "unknown placeholder"),
        (["--grant", "team/app"], "--grant: 'team/app': must be KEY=ACTIONS"),
        (["--group", "nope"], "user 'carol': groups: unknown group 'nope'"),
    ],
)
def test_what_the_service_would_refuse_is_never_written(config_dir, options, complaint):
    before = (config_dir / "users.json").read_bytes()
    code, output = add(config_dir, "carol", "pw", *options)
    assert code == 1 and complaint in output, output
    assert len(output.splitlines()) == 1
    assert (config_dir / "users.json").read_bytes() == before


RULE = (
    "(a user name is 1 to 256 printable characters, without ':' and without a space at either end)"
)


@pytest.mark.parametrize(
    ("name", "shown", "problem"),
    [
        ("ca:rol", "'ca:rol'", "contains ':', which ends the user name in Basic credentials"),
        (" carol", "' carol'", "begins or ends with a space"),
        ("\x1b[2Jcarol", "'\\x1b[2Jcarol'", "contains U+001B, a control character"),
        ("carol\x9b", "'carol\\x9b'", "contains U+009B, a control character"),
        ("carol\u2028", "'carol\\u2028'", "contains U+2028, a line separator"),
        (
            "\u202ecarol",
            "'\\u202ecarol'",
            "contains U+202E, a format character (such as a bidirectional control)",
        ),
        ("c" * 257, repr("c" * 64) + "... (257 characters)", "is 257 characters long"),
    ],
)
def test_a_bad_name_is_refused_in_one_escaped_line_before_the_password(
    config_dir, name, shown, problem
):
    before = (config_dir / "users.json").read_bytes()
    # No password on standard input: the name is refused before one is asked for.
    code, output = run(config_dir, "users", "add", name, "--password-stdin", input="")
    assert code == 1
    assert output == f"Error: user name {shown}: {problem} {RULE}\n"
    assert (config_dir / "users.json").read_bytes() == before


def test_adding_a_look_alike_of_a_user_warns(config_dir):
    code, output = add(config_dir, "\u0410lice")  # Cyrillic capital A
    assert code == 0, output
    assert "\u0410lice" in users_of(config_dir)
    assert (
        f"warning: {config_dir}/users.json: user '\\u0410lice': looks like user 'alice' "
        "(the same after case folding" in output
    )
    code, output = add(config_dir, "carol")
    assert code == 0 and "looks like" not in output


def test_list_escapes_every_unprintable_character(config_dir):
    """Names are checked when loaded; a group name (groups.json) can still hold anything."""
    group = "ops\x1b]0;owned\x07\u2028\u202e"
    helpers.write_json(config_dir / "groups.json", {group: {"repositories": {}}})
    users = users_of(config_dir)
    users["bob"]["groups"] = [group]
    helpers.write_json(config_dir / "users.json", users)
    code, text = run(config_dir, "users", "list")
    assert code == 0, text
    assert set(text) - set(filter(str.isprintable, text)) == {"\n"}  # no other unprintable
    assert "bob  groups: ops\\x1b]0;owned\\x07\\u2028\\u202e  catalog: no" in text
    code, as_json = run(config_dir, "users", "list", "--json")
    assert code == 0, as_json
    assert set(as_json) - set(filter(str.isprintable, as_json)) == {"\n"}
    listed = {user["name"]: user for user in json.loads(as_json)}
    assert listed["bob"]["groups"] == [group]


def test_list_refuses_a_file_with_a_bad_name_without_printing_it_raw(config_dir):
    users = users_of(config_dir)
    users["\x1b[2Jeve"] = users["bob"]
    helpers.write_json(config_dir / "users.json", users)
    code, output = run(config_dir, "users", "list")
    assert code == 1
    assert "\x1b" not in output
    assert output.startswith(f"Error: {config_dir}/users.json: user '\\x1b[2Jeve': the name ")


def test_the_lock_file_beside_users_json_is_ignored_by_git(config_dir):
    assert add(config_dir, "carol")[0] == 0
    left = sorted(p.name for p in config_dir.iterdir() if p.name.startswith("."))
    assert left == [".users.json.lock"]
    repo = Path(__file__).resolve().parents[2]
    for name in [*left, ".revocations.json.lock", ".users.json.x1y2z3.tmp"]:
        checked = subprocess.run(
            ["git", "-C", str(repo), "check-ignore", "--no-index", "-q", f"config/{name}"],
            check=False,
        )
        assert checked.returncode == 0, f"config/{name} is not git-ignored"


def test_the_example_file_keeps_its_layout(config_dir):
    shutil.copy(EXAMPLE, config_dir / "users.json")
    assert add(config_dir, "carol", "pw", "--grant", "x/*=pull")[0] == 0
    text = (config_dir / "users.json").read_text()
    assert text.startswith(EXAMPLE.read_text().rstrip()[:-1].rstrip() + ",\n")
    assert '        "repositories": {\n            "x/*": ["pull"]\n        }\n    }\n}\n' in text
    assert run(config_dir, "users", "remove", "carol")[0] == 0
    assert (config_dir / "users.json").read_bytes() == EXAMPLE.read_bytes()


def test_a_file_written_by_json_dumps_keeps_its_layout(config_dir):
    before = users_of(config_dir)  # helpers write indent 2, one action per line
    assert add(config_dir, "carol", "pw", "--grant", "x=pull")[0] == 0
    text = (config_dir / "users.json").read_text()
    assert text == json.dumps({**before, "carol": users_of(config_dir)["carol"]}, indent=2) + "\n"
    assert '\n  "carol": {\n    "pass_hash"' in text


def test_a_new_file_is_private_and_an_existing_one_keeps_its_mode(config_dir):
    (config_dir / "users.json").unlink()
    assert add(config_dir, "carol")[0] == 0
    assert stat.S_IMODE((config_dir / "users.json").stat().st_mode) == 0o600
    assert list(users_of(config_dir)) == ["carol"]
    os.chmod(config_dir / "users.json", 0o640)
    assert add(config_dir, "dave")[0] == 0
    assert stat.S_IMODE((config_dir / "users.json").stat().st_mode) == 0o640


def test_hash_password(config_dir):
    code, output = run(
        config_dir, "hash-password", "--password-stdin", "--cost", "5", input="s3cret\n"
    )
    assert code == 0, output
    pass_hash = output.strip().splitlines()[-1]
    assert pass_hash.startswith("$2b$05$")
    assert bcrypt.checkpw(b"s3cret", pass_hash.encode())
    assert not bcrypt.checkpw(b"s3cret\n", pass_hash.encode())


@pytest.mark.parametrize(
    ("env", "cost"),
    [({}, f"{helpers.TEST_COST:02d}"), ({"AUTH_SERVICE_BCRYPT_COST": "5"}, "05")],
)
def test_the_default_cost_is_bcrypt_cost_else_that_of_most_users(config_dir, env, cost):
    """A new hash gets the cost logins rehash to, so it is not rehashed at the first login."""
    code, output = run(config_dir, "hash-password", "--password-stdin", input="pw\n", env=env)
    assert code == 0, output
    assert output.strip().splitlines()[-1].startswith(f"$2b${cost}$")


def test_without_bcrypt_cost_or_users_the_default_cost_is_12(config_dir):
    (config_dir / "users.json").write_text("{}")
    code, output = run(config_dir, "hash-password", "--password-stdin", input="pw\n")
    assert code == 0, output
    assert output.strip().splitlines()[-1].startswith("$2b$12$")


# --- users show and users set ---------------------------------------------------------------


def test_show_gives_one_user_and_never_the_hash(config_dir):
    pass_hash = users_of(config_dir)["alice"]["pass_hash"]
    code, text = run(config_dir, "users", "show", "alice")
    assert code == 0, text
    code, as_json = run(config_dir, "users", "show", "alice", "--json")
    assert code == 0, as_json
    for output in (text, as_json):
        assert pass_hash not in output and "$2b$" not in output
    entry = users_of(config_dir)["alice"]
    assert json.loads(as_json) == {
        "name": "alice",
        "groups": entry.get("groups", []),
        "repositories": entry["repositories"],
        "catalog": False,
        "refresh_tokens": True,
    }
    lines = text.splitlines()
    assert lines[:5] == [
        "user: 'alice'",
        "groups: -",
        "catalog: no",
        "refresh tokens: yes",
        "repositories:",
    ]
    assert lines[5:] == [
        f"  {key}: {','.join(actions) or '- (denied)'}"
        for key, actions in entry["repositories"].items()
    ]


def test_show_of_a_missing_user_is_one_escaped_line(config_dir):
    code, output = run(config_dir, "users", "show", "no\x1b[2Jbody")
    assert (code, output) == (1, "Error: no user 'no\\x1b[2Jbody'\n")


def set_user(config_dir, name, *options):
    return run(config_dir, "users", "set", name, *options)


def test_set_changes_grants_groups_and_flags_and_keeps_the_password(config_dir):
    helpers.write_json(
        config_dir / "groups.json",
        {"ops": {"repositories": {}}, "dev": {"repositories": {"dev/*": ["pull"]}}},
    )
    assert add(config_dir, "carol", "carol-pw", "--grant", "team/*=pull,push", "--grant",
               "old/app=pull", "--group", "ops")[0] == 0  # fmt: skip
    before = users_of(config_dir)
    code, output = set_user(
        config_dir, "carol",
        "--grant", "team/*=pull", "--grant", "new/*=pull,push", "--grant", "team/secret=",
        "--revoke", "old/app", "--group", "dev", "--no-group", "ops",
        "--catalog", "--no-refresh-tokens",
    )  # fmt: skip
    assert code == 0, output
    assert output.splitlines()[0] == "changed user 'carol'"
    after = users_of(config_dir)
    assert after["carol"] == {
        "pass_hash": before["carol"]["pass_hash"],
        "groups": ["dev"],
        "repositories": {"team/*": ["pull"], "new/*": ["pull", "push"], "team/secret": []},
        "catalog": True,
        "refresh_tokens": False,
    }
    assert {k: v for k, v in after.items() if k != "carol"} == {
        k: v for k, v in before.items() if k != "carol"
    }
    assert bcrypt.checkpw(b"carol-pw", after["carol"]["pass_hash"].encode())


def test_set_back_to_the_defaults(config_dir):
    helpers.write_json(config_dir / "groups.json", {"ops": {"repositories": {}}})
    options = ["--catalog", "--no-refresh-tokens", "--group", "ops"]
    assert add(config_dir, "carol", "pw", *options)[0] == 0
    code, output = set_user(
        config_dir, "carol", "--no-catalog", "--refresh-tokens", "--no-group", "ops"
    )
    assert code == 0, output
    entry = users_of(config_dir)["carol"]
    del entry["pass_hash"]
    assert entry == {"repositories": {}, "catalog": False, "refresh_tokens": True}
    code, output = run(config_dir, "users", "show", "carol", "--json")
    assert json.loads(output) == {
        "name": "carol",
        "groups": [],
        "repositories": {},
        "catalog": False,
        "refresh_tokens": True,
    }


def test_set_a_flag_at_its_default_adds_no_key(config_dir):
    before = users_of(config_dir)["bob"]
    assert set_user(config_dir, "bob", "--no-catalog", "--refresh-tokens")[0] == 0
    assert users_of(config_dir)["bob"] == before


@pytest.mark.parametrize(
    ("name", "options", "code", "complaint"),
    [
        ("bob", [], 2, "nothing to change: give --grant, --revoke"),
        ("nobody", ["--catalog"], 1, "Error: no user 'nobody'"),
        ("bob", ["--revoke", "team/nope"], 1, "Error: user 'bob' has no grant for 'team/nope'"),
        ("bob", ["--no-group", "ops"], 1, "Error: user 'bob' is not in group 'ops'"),
        (
            "bob",
            ["--grant", "x=pull", "--revoke", "x"],
            1,
            "Error: 'x' is both granted and revoked",
        ),
        ("bob", ["--group", "nope"], 1, "user 'bob': groups: unknown group 'nope'"),
        ("bob", ["--grant", "team/app=pull,pusj"], 1, "--grant: user 'bob': repositories: "),
        ("bob", ["--grant", "team/app"], 1, "--grant: 'team/app': must be KEY=ACTIONS"),
    ],
)
def test_set_refuses_in_one_line_and_writes_nothing(config_dir, name, options, code, complaint):
    before = (config_dir / "users.json").read_bytes()
    exit_code, output = set_user(config_dir, name, *options)
    assert exit_code == code and complaint in output, output
    if code == 1:
        assert len(output.splitlines()) == 1
    assert (config_dir / "users.json").read_bytes() == before


def test_set_is_picked_up_by_the_running_service(make_app, config_dir, signing_cert):
    client = make_app().test_client()
    query = f"/v2/token?service={helpers.SERVICE}&scope=repository:fresh/app:push"
    headers = helpers.basic("bob", helpers.PASSWORDS["bob"])
    claims = helpers.verify_token(
        client.get(query, headers=headers).get_json()["token"], signing_cert
    )
    assert helpers.access_of(claims) == {("repository", "fresh/app"): set()}
    assert set_user(config_dir, "bob", "--grant", "fresh/*=pull,push")[0] == 0
    client.application.extensions["auth_service"].live.check_at_next_call()
    claims = helpers.verify_token(
        client.get(query, headers=headers).get_json()["token"], signing_cert
    )
    assert helpers.access_of(claims) == {("repository", "fresh/app"): {"push"}}


def test_no_refresh_tokens_says_how_to_end_those_issued(config_dir):
    code, output = set_user(config_dir, "bob", "--no-refresh-tokens")
    assert code == 0
    assert "refresh tokens issued until now still work" in output
    assert "tokens revoke-user" in output


def test_add_without_refresh_tokens(config_dir):
    assert add(config_dir, "carol", "pw", "--no-refresh-tokens")[0] == 0
    assert users_of(config_dir)["carol"]["refresh_tokens"] is False
    code, text = run(config_dir, "users", "list")
    assert "carol  groups: -  catalog: no  refresh tokens: no  repositories: -" in text.splitlines()
    assert add(config_dir, "dave", "pw", "--refresh-tokens")[0] == 0
    assert "refresh_tokens" not in users_of(config_dir)["dave"]  # the default is not written


def test_set_escapes_names_and_groups_in_its_errors(config_dir):
    code, output = set_user(config_dir, "bob", "--no-group", "ops\x1b[2J")
    assert (code, output) == (1, "Error: user 'bob' is not in group 'ops\\x1b[2J'\n")
