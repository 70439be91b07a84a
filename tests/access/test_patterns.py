"""Patterns in repository keys: matching, precedence, groups, anonymous fallback; table-driven."""

import pytest

from auth_service.access import patterns
from auth_service.access.patterns import PatternError, compile_pattern
from auth_service.access.policy import grant_access
from auth_service.access.rules import RuleSet
from auth_service.access.scopes import ResourceRequest
from auth_service.files.anonymous import AnonymousAccess
from auth_service.files.groups import Group
from auth_service.files.users import User, UserDirectory

NOBODY_ANONYMOUS = AnonymousAccess(blacklist=False, repositories=frozenset())
ALL_ACTIONS = ["pull", "push", "delete"]


def user(name, repositories, groups=(), catalog=False):
    grants = {key: frozenset(actions) for key, actions in repositories.items()}
    return User(name, b"", grants, catalog, tuple(groups))


def group(name, repositories, catalog=False):
    return Group(name, {key: frozenset(actions) for key, actions in repositories.items()}, catalog)


def allowed(principal, name, anonymous=NOBODY_ANONYMOUS):
    request = ResourceRequest("repository", name, frozenset(ALL_ACTIONS))
    [result] = grant_access(principal, [request], anonymous)
    return result.actions


@pytest.mark.parametrize(
    ("key", "name", "matches"),
    [
        # '*' is any run of characters, '/' included; matching is anchored on the whole name
        ("team/*", "team/app", True),
        ("team/*", "team/app/sub", True),
        ("team*", "team", True),  # the run may be empty
        ("team/*", "team", False),
        ("team/*", "myteam/app", False),
        ("team/*", "xteam/app", False),
        ("*/app", "team/app", True),
        ("*/app", "a/b/app", True),
        ("*/app", "team/app2", False),
        ("team/**", "team/a/b", True),  # '**' is '*'
        ("*", "anything/at/all", True),
        # '?' is exactly one character
        ("app?", "app1", True),
        ("app?", "app", False),
        ("app?", "app12", False),
        ("a?b", "a/b", True),
        # exact keys are anchored too
        ("app", "team/app", False),
        ("team/app", "team/app", True),
        ("team/app", "team/app/sub", False),
        # regex metacharacters in names are literal
        ("team.app/*", "teamxapp/x", False),
        ("team.app/*", "team.app/x", True),
        ("localhost:5000/*", "localhost:5000/team/app", True),
    ],
)
def test_matching(key, name, matches):
    assert compile_pattern(key).matches(name, "alice") is matches
    owner = user("alice", {key: ["pull"]})
    assert allowed(owner, name) == (("pull",) if matches else ())


@pytest.mark.parametrize(
    ("key", "user_name", "name", "matches"),
    [
        ("${user}/*", "alice", "alice/app", True),
        ("${user}/*", "alice", "alice/app/sub", True),
        ("${user}/*", "alice", "bob/app", False),
        ("${user}/*", "alice", "alicex/app", False),
        ("${user}/*", "alice", "xalice/app", False),
        ("${user}/*", "alice", "alice", False),
        ("${user}", "alice", "alice", True),
        ("home/${user}/*", "bob", "home/bob/tool", True),
        ("home/${user}/*", "bob", "home/alice/tool", False),
        ("${user}-*/${user}", "al", "al-x/al", True),
        ("${user}-*/${user}", "al", "al-x/bo", False),
        ("*/${user}", "al", "x/y/al", True),
        ("${user}/*", "a.b", "a.b/x", True),
        ("${user}/*", "a.b", "axb/x", False),  # the user's name is literal, not a regex
    ],
)
def test_user_placeholder(key, user_name, name, matches):
    owner = user(user_name, {key: ["pull"]})
    assert allowed(owner, name) == (("pull",) if matches else ())


# One user holding many competing keys; the most specific matching one decides.
LAYERED = user(
    "alice",
    {
        "*": ["pull"],
        "team/*": ["pull", "push"],
        "team/secret/*": [],
        "team/app": ["*"],
        "team/frozen": [],
        "team/?pp": ["delete"],
        "team/*pp": ["push"],
        "${user}/*": ["*"],
        "alice/readonly": ["pull"],
    },
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("other/repo", ("pull",)),  # only "*" matches
        ("team/tool", ("pull", "push")),  # "team/*" beats "*"
        ("team/a/b/c", ("pull", "push")),
        ("team/secret/x", ()),  # deny by a more specific pattern with []
        ("team/app", ("pull", "push", "delete")),  # exact beats every pattern
        ("team/frozen", ()),  # exact [] denies, though "team/*" would allow
        ("team/opp", ("delete",)),  # 7 literal characters, one '?': beats "team/*pp" (7, one '*')
        ("team/oopp", ("push",)),  # "team/*pp" (7) beats "team/*" (5)
        ("alice/tool", ("pull", "push", "delete")),  # "${user}/*" counts as "alice/*": 6 literal
        ("alice/readonly", ("pull",)),  # exact beats "${user}/*"
        ("bob/tool", ("pull",)),
    ],
)
def test_most_specific_key_decides(name, expected):
    assert allowed(LAYERED, name) == expected


@pytest.mark.parametrize(
    ("keys", "name", "expected"),
    [
        # equally specific keys apply together: their actions are united
        ({"a/*": ["pull"], "*/b": ["push"]}, "a/b", ("pull", "push")),
        ({"a/*": ["pull"], "*/b": ["push"]}, "a/c", ("pull",)),
        # '**' is the same key as '*': united
        ({"t/*": ["pull"], "t/**": ["push"]}, "t/x", ("pull", "push")),
        # more literal characters win over wildcards of any kind
        ({"ab*": ["pull"], "a??": ["push"]}, "abc", ("pull",)),
        # same literal characters: more '?' wins, then fewer '*'
        ({"a?c": ["pull"], "a*c": ["push"]}, "abc", ("pull",)),
        ({"a*c": ["pull"], "a*c*": ["push"]}, "abc", ("pull",)),
        # "*" is least specific, even below a pattern of wildcards only
        ({"*": ["pull"], "?*": ["push"]}, "abc", ("push",)),
    ],
)
def test_ties_and_ranks(keys, name, expected):
    assert allowed(user("u", keys), name) == expected


DEVELOPERS = group(
    "developers",
    {"team/*": ["pull", "push"], "${user}/*": ["*"], "team/shared": ["pull"]},
    catalog=False,
)
OPS = group("ops", {"team/*": ["delete"], "*": ["pull"]}, catalog=True)
DEV = user("dev", {"team/app": ["pull"]}, groups=[DEVELOPERS])
DEVOPS = user("devops", {"team/private/*": []}, groups=[DEVELOPERS, OPS])
LEAD = user("lead", {"team/*": ["pull"], "team/shared": ["push"]}, groups=[DEVELOPERS])


@pytest.mark.parametrize(
    ("principal", "name", "expected"),
    [
        (DEV, "team/tool", ("pull", "push")),  # the group's key
        (DEV, "team/app", ("pull",)),  # the user's exact key beats the group's pattern
        (DEV, "dev/tool", ("pull", "push", "delete")),  # ${user} in a group is the member
        (DEV, "devops/tool", ()),
        (DEV, "other/x", ()),  # nothing matches: anonymous policy (nobody)
        (DEVOPS, "devops/tool", ("pull", "push", "delete")),
        (DEVOPS, "team/tool", ("pull", "push", "delete")),  # "team/*" in two groups: united
        (DEVOPS, "other/x", ("pull",)),  # ops' "*"
        (DEVOPS, "team/private/x", ()),  # the user's more specific [] beats both groups
        (LEAD, "team/tool", ("pull", "push")),  # "team/*" of user and group: united
        (LEAD, "team/shared", ("pull", "push")),  # equal exact keys of user and group: united
    ],
)
def test_groups(principal, name, expected):
    assert allowed(principal, name) == expected


@pytest.mark.parametrize(
    ("principal", "catalog"),
    [(DEV, False), (DEVOPS, True), (user("c", {}, catalog=True), True), (None, False)],
)
def test_catalog_from_user_or_group(principal, catalog):
    request = ResourceRequest("registry", "catalog", frozenset({"*"}))
    [result] = grant_access(principal, [request], NOBODY_ANONYMOUS)
    assert result.actions == (("*",) if catalog else ())


WHITELIST = AnonymousAccess(False, frozenset({"public/*", "library/?ebian", "tools"}))
BLACKLIST = AnonymousAccess(True, frozenset({"private/*", "*-secret"}))


@pytest.mark.parametrize(
    ("anonymous", "name", "expected"),
    [
        (WHITELIST, "public/app", ("pull",)),
        (WHITELIST, "public/a/b", ("pull",)),
        (WHITELIST, "library/debian", ("pull",)),
        (WHITELIST, "library/ddebian", ()),
        (WHITELIST, "tools", ("pull",)),
        (WHITELIST, "tools/x", ()),
        (WHITELIST, "publicity/app", ()),
        (BLACKLIST, "private/app", ()),
        (BLACKLIST, "team/db-secret", ()),
        (BLACKLIST, "team/db-secrets", ("pull",)),
        (BLACKLIST, "team/app", ("pull",)),
    ],
)
def test_anonymous_patterns(anonymous, name, expected):
    assert allowed(None, name, anonymous) == expected


@pytest.mark.parametrize(
    ("principal", "name", "expected"),
    [
        # keys that don't match fall back to the anonymous policy, patterns included
        (user("u", {"team/*": ["push"]}), "public/app", ("pull",)),
        (user("u", {"team/*": ["push"]}), "team/app", ("push",)),  # a match: no fallback
        (user("u", {"team/*": []}), "team/app", ()),
        (user("u", {"public/*": []}), "public/app", ()),  # a matching [] denies
        (user("u", {"${user}/*": ["push"]}), "other/x", ()),
    ],
)
def test_fallback_to_anonymous(principal, name, expected):
    assert allowed(principal, name, WHITELIST) == expected


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("${account}/*", "unknown placeholder '${account}'"),
        ("$user/*", "unknown placeholder '$user'"),
        ("${user/*", "unknown placeholder"),
        ("team/[ab]", "'[' is not allowed"),
        ("team/a b", "' ' is not allowed"),
        ("team//*", "can match no repository name"),
        ("*-", "can match no repository name"),
        ("Team/App", "is not a repository name"),
        ("", "is not a repository name"),
    ],
)
def test_malformed_patterns(key, problem):
    with pytest.raises(PatternError) as caught:
        compile_pattern(key)
    assert problem in str(caught.value)


def test_patterns_are_compiled_once_and_shared():
    first = user("alice", {"${user}/*": ["pull"]})
    second = user("bob", {"${user}/*": ["pull"]})
    [rule_a] = first.rules.user_patterns[""].buckets["/"]  # after no prefix, "${user}", then "/"
    [rule_b] = second.rules.user_patterns[""].buckets["/"]
    assert rule_a.pattern is rule_b.pattern


def test_exact_names_are_a_dictionary_lookup(monkeypatch):
    rules = RuleSet.from_grants({f"team/app{i}": ["pull"] for i in range(1000)}, "users.json", "u")
    assert rules.patterns.lengths == () and rules.user_patterns == {}
    tried = []
    monkeypatch.setattr(patterns.Pattern, "matches", lambda self, n, u: tried.append(self.key))
    assert rules.lookup("team/app7", "u").origins[0].key == "team/app7"
    assert tried == []


def test_lookup_tries_only_the_patterns_whose_prefix_fits(monkeypatch):
    """Thousands of patterns: a lookup tries the few whose literal prefix starts the name."""
    keys = {f"project{i}/*": ["pull"] for i in range(3000)}
    keys.update({f"${{user}}/p{i}-*": ["push"] for i in range(3000)})
    keys.update({"*": ["pull"], "*/app": ["pull"]})
    owner = user("alice", keys)
    real = patterns.Pattern.matches
    tried = []

    def spy(self, name, user_name):
        tried.append(self.key)
        return real(self, name, user_name)

    monkeypatch.setattr(patterns.Pattern, "matches", spy)
    assert allowed(owner, "project42/app") == ("pull",)
    assert sorted(tried) == ["*", "*/app", "project42/*"]
    tried.clear()
    assert allowed(owner, "alice/p7-x") == ("push",)
    assert sorted(tried) == ["${user}/p7-*", "*", "*/app"]


def test_a_request_does_not_look_at_other_users(monkeypatch):
    """The cost of a decision does not grow with the number of users: only one user is read."""
    keys = {"${user}/*": ["*"], "team/*": ["pull"]}
    many = {f"user{i}": user(f"user{i}", keys) for i in range(2000)}
    directory = UserDirectory(many)
    real = RuleSet.lookup
    owners = set()

    def spy(self, name, user_name):
        owners.add(id(self))
        return real(self, name, user_name)

    monkeypatch.setattr(RuleSet, "lookup", spy)
    principal = directory.get("user7")
    assert allowed(principal, "user7/app") == ("pull", "push", "delete")
    assert owners == {id(principal.rules)}
