"""Authorization is requested ∩ allowed, per resource; table-driven."""

import pytest

from auth_service.access.policy import Grant, grant_access
from auth_service.access.scopes import ResourceRequest
from auth_service.files.anonymous import AnonymousAccess
from auth_service.files.users import User

WHITELIST = AnonymousAccess(blacklist=False, repositories=frozenset({"pub/x"}))
BLACKLIST = AnonymousAccess(blacklist=True, repositories=frozenset({"secret/x"}))


def user(repositories, catalog=False, name="u"):
    grants = {repo: frozenset(actions) for repo, actions in repositories.items()}
    return User(name, b"", grants, catalog)


ALICE = user({"team/app": ["pull", "push"], "team/ro": ["pull"], "*": ["pull"]})
NO_STAR = user({"team/app": ["pull", "push", "delete"]})
ADMIN = user({"*": ["*"]}, catalog=True)
ALL_EXPLICIT = user({"team/app": ["pull", "push", "delete"]})
DENIED = user({"team/app": []})


def grant(principal, type_, name, actions, anonymous=WHITELIST):
    request = ResourceRequest(type_, name, frozenset(actions))
    [result] = grant_access(principal, [request], anonymous)
    assert (result.type, result.name) == (type_, name)
    return result.actions


@pytest.mark.parametrize(
    ("principal", "type_", "name", "requested", "expected"),
    [
        # anonymous, whitelist
        (None, "repository", "pub/x", ["pull"], ("pull",)),
        (None, "repository", "pub/x", ["pull", "push"], ("pull",)),
        (None, "repository", "pub/x", ["*"], ("pull",)),
        (None, "repository", "team/app", ["pull"], ()),
        (None, "registry", "catalog", ["*"], ()),
        # exact entries intersect with the request
        (ALICE, "repository", "team/app", ["pull", "push"], ("pull", "push")),
        (ALICE, "repository", "team/app", ["push"], ("push",)),
        (ALICE, "repository", "team/app", ["delete"], ()),
        (ALICE, "repository", "team/app", ["pull", "frob"], ("pull",)),
        (ALICE, "repository", "team/ro", ["pull", "push"], ("pull",)),
        # '*' asked: the concrete allowed subset unless everything is allowed
        (ALICE, "repository", "team/app", ["*"], ("pull", "push")),
        (ADMIN, "repository", "team/app", ["*"], ("*",)),
        (ALL_EXPLICIT, "repository", "team/app", ["*"], ("*",)),
        (ADMIN, "repository", "any/thing", ["pull", "push", "delete"], ("pull", "push", "delete")),
        # the user's "*" entry covers names without an exact entry...
        (ALICE, "repository", "other/repo", ["pull", "push"], ("pull",)),
        # ...and without one, the anonymous rule applies
        (NO_STAR, "repository", "pub/x", ["pull", "push"], ("pull",)),
        (NO_STAR, "repository", "other/repo", ["pull"], ()),
        # an exact entry beats the anonymous rule, even when it is empty
        (DENIED, "repository", "team/app", ["pull"], ()),
        # catalog: only with "catalog": true, only the literal '*'
        (ADMIN, "registry", "catalog", ["*"], ("*",)),
        (ADMIN, "registry", "catalog", ["pull"], ()),
        (ALICE, "registry", "catalog", ["*"], ()),
        (ADMIN, "registry", "other", ["*"], ()),
        # unknown types grant nothing, not even to an admin
        (ADMIN, "widget", "foo", ["pull"], ()),
        (ADMIN, "repository", "team/app", [], ()),
    ],
)
def test_grant(principal, type_, name, requested, expected):
    assert grant(principal, type_, name, requested) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [("secret/x", ()), ("anything/else", ("pull",)), ("pub/x", ("pull",))],
)
def test_blacklist(name, expected):
    assert grant(None, "repository", name, ["pull", "push"], BLACKLIST) == expected


def test_one_grant_per_request_in_order():
    requests = [
        ResourceRequest("repository", "team/app", frozenset({"pull", "push"})),
        ResourceRequest("repository", "secret/x", frozenset({"pull"})),
        ResourceRequest("registry", "catalog", frozenset({"*"})),
    ]
    assert grant_access(NO_STAR, requests, WHITELIST) == [
        Grant("repository", "team/app", ("pull", "push")),
        Grant("repository", "secret/x", ()),
        Grant("registry", "catalog", ()),
    ]


def test_never_more_than_requested_exhaustive():
    """For every principal and every subset of actions, the grant is within the request."""
    import itertools

    actions = ["pull", "push", "delete", "*", "frob"]
    for principal in (None, ALICE, NO_STAR, ADMIN, ALL_EXPLICIT, DENIED):
        for size in range(len(actions) + 1):
            for requested in itertools.combinations(actions, size):
                for name in ("team/app", "pub/x", "other/repo"):
                    granted = set(grant(principal, "repository", name, requested))
                    if "*" in requested:
                        continue  # '*' is answered with the concrete allowed subset
                    assert granted <= set(requested), (principal, requested, name)
