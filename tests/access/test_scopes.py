"""The scope grammar: parsing, merging, and what is rejected."""

import pytest

from auth_service.access.scopes import ResourceRequest, ScopeError, is_valid_name, parse_scopes

from .. import helpers


def req(type_: str, name: str, *actions: str) -> ResourceRequest:
    return ResourceRequest(type_, name, frozenset(actions))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["repository:team/app:pull"], [req("repository", "team/app", "pull")]),
        (["repository:team/app:push,pull"], [req("repository", "team/app", "pull", "push")]),
        # host:port names keep their colon: type before the first, actions after the last
        (
            ["repository:localhost:5000/team/app:pull"],
            [req("repository", "localhost:5000/team/app", "pull")],
        ),
        # the deprecated resource class is dropped
        (["repository(plugin):team/app:pull"], [req("repository", "team/app", "pull")]),
        (["registry:catalog:*"], [req("registry", "catalog", "*")]),
        # several scopes in one value, as the registry's challenge and OAuth POST send them
        (
            ["repository:team/a:pull repository:team/b:pull"],
            [req("repository", "team/a", "pull"), req("repository", "team/b", "pull")],
        ),
        # repeated parameters: the cross-repository mount shape
        (
            ["repository:team/new:pull,push", "repository:team/app:pull"],
            [req("repository", "team/new", "pull", "push"), req("repository", "team/app", "pull")],
        ),
        # the same resource twice merges into the union, in order of first appearance
        (
            ["repository:team/a:pull", "repository:team/b:pull", "repository:team/a:push,pull"],
            [req("repository", "team/a", "pull", "push"), req("repository", "team/b", "pull")],
        ),
        (
            ["repository:team/a:pull", "repository(plugin):team/a:push"],
            [req("repository", "team/a", "pull", "push")],
        ),
        ([""], []),
        (["  "], []),
        ([], []),
        (["widget:foo:pull"], [req("widget", "foo", "pull")]),
        (["repository:team/app:pull,frob"], [req("repository", "team/app", "pull", "frob")]),
        (["repository:team/app:"], [req("repository", "team/app")]),
        (["repository:team/app:pull,,push"], [req("repository", "team/app", "pull", "push")]),
    ],
)
def test_parse_scopes(values, expected):
    assert parse_scopes(values) == expected


@pytest.mark.parametrize(
    "scope",
    [
        *helpers.MALFORMED_SCOPES,
        ":foo:pull",
        "Repository:foo:pull",
        "repository(:foo:pull",
        "repository:team//app:pull",
        "repository:team/app/:pull",
        "repository:team/app:PULL",
        "repository:team/app:pull;rm",
        "repository:team/\u00e4pp:pull",
        "repository:" + "a" * 256 + ":pull",  # one past the limit
    ],
)
def test_malformed_scopes_raise(scope):
    with pytest.raises(ScopeError):
        parse_scopes([scope])


def test_longest_valid_name_is_accepted():
    assert parse_scopes(["repository:" + "a" * 255 + ":pull"])[0].name == "a" * 255


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("team/app", True),
        ("a", True),
        ("my-app__x.y", True),
        ("registry.example.org:5000/team/app", True),
        ("localhost/app", True),
        ("Team/app", True),  # "Team" is a host name, as in the registry's own grammar
        ("team/App", False),
        ("-app", False),
        ("app-", False),
        ("", False),
    ],
)
def test_repository_name_grammar(name, valid):
    assert is_valid_name(name) is valid
