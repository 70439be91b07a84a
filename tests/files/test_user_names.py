"""User names: the rule the loader and the command line enforce, and names easily taken for one
another, which the loader warns about at start-up."""

from __future__ import annotations

import logging

import pytest

from auth_service import create_app
from auth_service.errors import ConfigError
from auth_service.files import users as users_module
from auth_service.files.users import load_users

from .. import helpers

MAX_USER_NAME_LENGTH = 256


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "is empty"),
        ("ca:rol", "contains ':'"),
        (" carol", "begins or ends with a space"),
        ("carol ", "begins or ends with a space"),
        ("car\tol", "contains U+0009, a control character"),
        ("carol\n", "contains U+000A, a control character"),
        ("\x1b[31mroot", "contains U+001B, a control character"),
        ("carol\x85", "contains U+0085, a control character"),  # C1: NEL
        ("carol\u2028x", "contains U+2028, a line separator"),
        ("carol\u2029x", "contains U+2029, a paragraph separator"),
        ("\u202eloran", "contains U+202E, a format character"),  # right-to-left override
        ("car\u200bol", "contains U+200B, a format character"),  # zero-width space
        ("carol\u2066x", "contains U+2066, a format character"),  # left-to-right isolate
        ("car\u00a0ol", "contains U+00A0, a space other than U+0020"),
        ("carol\ue000", "contains U+E000, a private-use character"),
        ("x" * (MAX_USER_NAME_LENGTH + 1), f"is {MAX_USER_NAME_LENGTH + 1} characters long"),
    ],
)
def test_names_breaking_the_rule(name, problem):
    assert users_module.user_name_problem(name).startswith(problem)


@pytest.mark.parametrize(
    "name",
    ["alice", "Alice", "ci-bot_2", "first.last@example.org", "Zoë", "渡辺", "a b", "x" * 256],
)
def test_good_names(name):
    assert users_module.MAX_USER_NAME_LENGTH == MAX_USER_NAME_LENGTH
    assert users_module.user_name_problem(name) is None


def test_the_loader_refuses_a_bad_name_in_one_line_naming_file_and_user_escaped(tmp_path):
    path = tmp_path / "users.json"
    users = helpers.users_document()
    users["\x1b]0;owned\x07eve\u2028x"] = users["bob"]
    helpers.write_json(path, users)
    with pytest.raises(ConfigError) as raised:
        load_users(path)
    message = str(raised.value)
    assert message.isprintable()  # no raw control character reaches a terminal or a log
    assert message.startswith(
        f"{path}: user '\\x1b]0;owned\\x07eve\\u2028x': the name contains U+001B, a control "
        "character (a user name is 1 to 256 printable characters"
    )


def test_a_very_long_bad_name_is_shown_cut_short():
    shown = users_module.shown_name("\x1b" * 10_000)
    assert shown.isprintable() and len(shown) < 300 and shown.endswith("(10000 characters)")


def test_the_skeleton_matches_case_nfkc_and_look_alike_letters():
    assert {
        users_module.name_skeleton(name)
        for name in (
            "alice",
            "Alice",
            "ALICE",
            "\uff41\uff4c\uff49\uff43\uff45",  # fullwidth
            "\u0430lice",  # Cyrillic a
            "\u0410lice",  # Cyrillic capital A
            "\u0391LICE",  # Greek capital alpha
            "al\u0456c\u0435",  # Cyrillic i and e
        )
    } == {"alice"}
    # Accented look-alikes too: Cyrillic yo is Latin e with diaeresis.
    assert users_module.name_skeleton("jo\u0451l") == users_module.name_skeleton("Jo\u00ebl")
    assert users_module.name_skeleton("bob") != users_module.name_skeleton("bobby")


def test_look_alike_pairs_name_the_first_of_each_kind():
    names = ["alice", "bob", "Alice", "\u0430lice", "carol", "B\u041eB"]
    assert users_module.look_alike_names(names) == [
        ("alice", "Alice"),
        ("alice", "\u0430lice"),
        ("bob", "B\u041eB"),
    ]


def test_look_alike_users_are_a_warning_at_start_up(config_dir, caplog):
    users = helpers.users_document()
    users["Alice"] = users["alice"]
    users["\u0430lice"] = users["alice"]
    helpers.write_json(config_dir / "users.json", users)
    with caplog.at_level(logging.WARNING, logger="auth_service"):
        app = create_app({"TESTING": True, "CONFIG_DIR": config_dir})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    path = config_dir / "users.json"
    assert [w for w in warnings if "looks like user" in w] == [
        f"{path}: user 'Alice': looks like user 'alice' (the same after case folding, NFKC "
        "normalisation and replacing Cyrillic and Greek look-alike letters): rename one of them",
        f"{path}: user '\\u0430lice': looks like user 'alice' (the same after case folding, NFKC "
        "normalisation and replacing Cyrillic and Greek look-alike letters): rename one of them",
    ]
    # A warning, not a refusal: all of them are users, each with their own password.
    client = app.test_client()
    query = f"/v2/token?service={helpers.SERVICE}"
    assert client.get(query, headers=helpers.basic("Alice", "alice-pw")).status_code == 200
