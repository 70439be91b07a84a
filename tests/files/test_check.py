"""``auth-service config check``: every problem of every file, one line each."""

import copy
import json

import pytest

from auth_service.files.check import check_config

from .. import helpers
from ..cli.test_cli import run


def users_with_cost(cost, **extra):
    """The test users, their hashes relabelled with ``cost`` (the check reads, never verifies)."""
    document = copy.deepcopy(helpers.users_document())  # tests change it: keep USERS intact
    for entry in document.values():
        entry["pass_hash"] = entry["pass_hash"].replace("$04$", f"${cost:02d}$", 1)
    return {**document, **extra}


@pytest.fixture
def good_dir(config_dir):
    helpers.write_json(config_dir / "users.json", users_with_cost(12))
    (config_dir / "users.json").chmod(0o600)  # later rewrites of it keep this mode
    (config_dir / "token.key").chmod(0o600)
    return config_dir


def check(config_dir):
    code, output = run(config_dir, "config", "check")
    return code, output.splitlines()


def test_a_good_configuration_passes(good_dir):
    code, lines = check(good_dir)
    assert (code, lines) == (0, ["configuration OK"])


def test_problems_of_several_files_are_each_one_line(good_dir):
    users = users_with_cost(12)
    users["bob"]["pass_hash"] = "plaintext"
    users["alice"]["repositories"]["team/app"] = ["pull", "pusj"]
    helpers.write_json(good_dir / "users.json", users)
    (good_dir / "repositories.json").write_text("{")
    helpers.write_json(good_dir / "groups.json", {"ops": {"repositories": {}, "catlog": True}})
    helpers.write_json(good_dir / "revocations.json", {"tokens": [], "users": {}})
    (good_dir / "revocations.json").chmod(0o600)
    (good_dir / "token.crt").write_bytes(helpers.cert_pem(helpers.make_cert(helpers.make_key())))

    code, lines = check(good_dir)
    assert code == 1
    d = str(good_dir)
    assert lines == [
        f"{d}/token.crt: CERT_PATH: certificate does not belong to KEY_PATH's key",
        f"{d}/groups.json: group 'ops': unknown key 'catlog' (allowed: catalog, repositories)",
        f"{d}/users.json: user 'alice': repositories: 'team/app': unknown action 'pusj' "
        "(allowed: pull, push, delete, *)",
        f"{d}/users.json: user 'bob': pass_hash: is not a bcrypt hash ($2a$, $2b$ or $2y$)",
        f"{d}/repositories.json: invalid JSON: Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1)",
        f"{d}/revocations.json: tokens: must be an object of name: epoch seconds",
        "Error: 6 problems found",
    ]


def test_without_config_py_the_other_files_are_still_checked(good_dir):
    (good_dir / "config.py").unlink()
    helpers.write_json(good_dir / "users.json", users_with_cost(12, eve={"pass_hash": "x"}))
    code, lines = check(good_dir)
    assert code == 1
    assert lines[0] == f"{good_dir}/config.py: file not found"
    assert lines[1].startswith(f"{good_dir}/users.json: user 'eve': pass_hash: ")
    assert lines[2:] == ["Error: 2 problems found"]


def test_users_of_a_broken_groups_json_are_checked_against_its_names(good_dir):
    helpers.write_json(good_dir / "groups.json", {"ops": {"repositories": []}})
    users = users_with_cost(12)
    users["alice"]["groups"] = ["ops"]
    users["bob"]["groups"] = ["nope"]
    helpers.write_json(good_dir / "users.json", users)
    code, lines = check(good_dir)
    assert code == 1
    assert [line.split(": ")[1] for line in lines[:-1]] == ["group 'ops'", "user 'bob'"]


@pytest.mark.parametrize(
    ("days", "start_days_ago", "complaint"),
    [(-1, 10, "CERT_PATH: expired on"), (10, -1, "CERT_PATH: is not valid before")],
)
def test_an_unusable_certificate_is_a_problem(
    good_dir, signing_key, days, start_days_ago, complaint
):
    cert = helpers.make_cert(signing_key, days=days, start_days_ago=start_days_ago)
    (good_dir / "token.crt").write_bytes(helpers.cert_pem(cert))
    code, lines = check(good_dir)
    assert code == 1
    assert lines[0].startswith(f"{good_dir}/token.crt: {complaint}")
    assert lines[1:] == ["Error: 1 problem found"]


def test_a_certificate_expiring_within_30_days_is_a_warning(good_dir, signing_key):
    cert = helpers.make_cert(signing_key, days=20)
    (good_dir / "token.crt").write_bytes(helpers.cert_pem(cert))
    code, lines = check(good_dir)
    assert code == 0
    assert lines[0].startswith(f"warning: {good_dir}/token.crt: certificate expires on ")
    assert lines[1:] == ["configuration OK"]


def test_a_key_readable_by_everyone_is_a_warning(good_dir):
    (good_dir / "token.key").chmod(0o644)
    code, lines = check(good_dir)
    assert code == 0
    assert lines == [
        f"warning: {good_dir}/token.key: KEY_PATH: readable by every user (mode 0644); chmod 600",
        "configuration OK",
    ]


@pytest.mark.parametrize("name", ["users.json", "revocations.json"])
def test_hashes_or_revocations_readable_by_everyone_are_a_warning(good_dir, name):
    helpers.write_json(good_dir / "revocations.json", {"tokens": {}, "users": {"bob": 1}})
    (good_dir / "revocations.json").chmod(0o600)
    (good_dir / name).chmod(0o644)
    code, lines = check(good_dir)
    assert code == 0
    assert lines == [
        f"warning: {good_dir}/{name}: readable by every user (mode 0644); chmod 600, or 640 if "
        "a group must read it",
        "configuration OK",
    ]
    (good_dir / name).chmod(0o640)  # a group may read it: no warning
    assert check(good_dir) == (0, ["configuration OK"])


def test_names_the_same_but_for_case_or_look_alike_letters_are_a_warning(good_dir):
    users = users_with_cost(12)
    users["Alice"] = users["alice"]
    users["\u0430lice"] = users["alice"]  # Cyrillic a
    users["\uff42\uff4f\uff42"] = users["bob"]  # fullwidth b, o, b: NFKC makes them "bob"
    users["\u0392\u039f\u0392"] = users["bob"]  # Greek capital beta, omicron, beta
    helpers.write_json(good_dir / "users.json", users)
    code, lines = check(good_dir)
    assert code == 0, lines
    same = (
        "(the same after case folding, NFKC normalisation and replacing Cyrillic and Greek "
        "look-alike letters): rename one of them"
    )
    assert lines == [
        f"warning: {good_dir}/users.json: user 'Alice': looks like user 'alice' {same}",
        f"warning: {good_dir}/users.json: user '\\u0430lice': looks like user 'alice' {same}",
        f"warning: {good_dir}/users.json: user '\\uff42\\uff4f\\uff42': looks like user 'bob' "
        f"{same}",
        f"warning: {good_dir}/users.json: user '\\u0392\\u039f\\u0392': looks like user 'bob' "
        f"{same}",
        "configuration OK",
    ]


def test_a_user_name_with_a_control_character_is_one_line_shown_escaped(good_dir):
    users = users_with_cost(12)
    users["eve\x1b]0;pwned\x07"] = users["bob"]
    users["mallory\u202e"] = users["bob"]
    helpers.write_json(good_dir / "users.json", users)
    code, lines = check(good_dir)
    assert code == 1
    assert lines == [
        f"{good_dir}/users.json: user 'eve\\x1b]0;pwned\\x07': the name contains U+001B, a "
        "control character (a user name is 1 to 256 printable characters, without ':' and "
        "without a space at either end)",
        f"{good_dir}/users.json: user 'mallory\\u202e': the name contains U+202E, a format "
        "character (such as a bidirectional control) (a user name is 1 to 256 printable "
        "characters, without ':' and without a space at either end)",
        "Error: 2 problems found",
    ]


def test_a_missing_key_is_a_problem(good_dir):
    (good_dir / "token.key").unlink()
    code, lines = check(good_dir)
    assert code == 1 and lines[0].startswith(f"{good_dir}/token.key: KEY_PATH: cannot be read")


def test_weak_costs_are_problems_and_slow_ones_warnings(good_dir):
    users = users_with_cost(12)
    users["alice"]["pass_hash"] = users["alice"]["pass_hash"].replace("$12$", "$09$")
    users["bob"]["pass_hash"] = users["bob"]["pass_hash"].replace("$12$", "$15$")
    helpers.write_json(good_dir / "users.json", users)
    code, lines = check(good_dir)
    assert code == 1
    assert lines == [
        f"{good_dir}/users.json: user 'alice': pass_hash: bcrypt cost 9 is weak (use 10 or more)",
        f"warning: {good_dir}/users.json: user 'bob': pass_hash: bcrypt cost 15 makes every "
        "login slow (at most 14 advised)",
        f"warning: {good_dir}/users.json: bcrypt costs are mixed (1 at cost 9, 3 at cost 12, "
        "1 at cost 15): hashes are rehashed to cost 12 (the most common, as BCRYPT_COST is not "
        "set) as their users log in",
        "Error: 1 problem found",
    ]


def test_bcrypt_cost_setting_is_checked_too(good_dir):
    with open(good_dir / "config.py", "a") as config:
        config.write("BCRYPT_COST = 4\n")
    findings = check_config(good_dir)
    assert [(f.problem, f.message.split(": ", 1)[1]) for f in findings] == [
        (True, "BCRYPT_COST: bcrypt cost 4 is weak (use 10 or more)"),
        (False, "BCRYPT_COST: 4 differs from the cost of the hashes (12): each is rehashed to "
         "4 at its user's next login"),
    ]  # fmt: skip


def test_mixed_costs_are_one_warning_naming_the_costs_and_counts(good_dir):
    users = users_with_cost(12)
    for name in ("alice", "bob"):
        users[name]["pass_hash"] = users[name]["pass_hash"].replace("$12$", "$10$")
    helpers.write_json(good_dir / "users.json", users)
    code, lines = check(good_dir)
    assert code == 0
    assert lines == [
        f"warning: {good_dir}/users.json: bcrypt costs are mixed (2 at cost 10, 3 at cost 12): "
        "hashes are rehashed to cost 12 (the most common, as BCRYPT_COST is not set) as their "
        "users log in",
        "configuration OK",
    ]
    with open(good_dir / "config.py", "a") as config:
        config.write("BCRYPT_COST = 10\n")
    assert [str(finding) for finding in check_config(good_dir)] == [
        f"warning: {good_dir}/users.json: bcrypt costs are mixed (2 at cost 10, 3 at cost 12): "
        "hashes are rehashed to cost 10 (BCRYPT_COST) as their users log in"
    ]


def test_loader_warnings_are_reported_not_logged(good_dir, caplog):
    (good_dir / "repositories.json").write_text(json.dumps({"backlist": True}))
    (good_dir / "config.py").write_text(
        f"ISSUER = 'i'\nKEY_PATH = 'token.key'\nSERVICE = {helpers.SERVICE!r}\n"
    )
    code, lines = check(good_dir)
    assert code == 0
    assert lines == [
        f"warning: {good_dir}/config.py: CERT_PATH: not set: tokens carry no x5c header, which "
        "registry 3 needs unless it is given a jwks file (auth-service keys jwks)",
        f"warning: {good_dir}/repositories.json: 'backlist' is the old spelling of 'blacklist'; "
        "please rename it",
        "configuration OK",
    ]
    assert caplog.records == []
