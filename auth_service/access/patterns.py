"""Repository patterns: the keys of ``users.json``, ``groups.json`` and ``repositories.json``.

A key is a repository name in which three tokens may stand for something else:

    *        any run of characters, ``/`` included, possibly none (``team/*`` covers
             ``team/app/sub``; ``team*`` covers ``team``)
    ?        exactly one character
    ${user}  the name of the user the rule is applied for

Matching is anchored: the pattern must match the whole name (``team/*`` does not match
``myteam/app``). ``**`` means the same as ``*``. A key without ``*`` or ``?`` is exact.

Patterns are compiled once, when a file loads, into a :class:`Pattern` that knows its
specificity (:meth:`Pattern.rank`) and its literal prefix (for the index in :mod:`.rules`).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from auth_service.access.scopes import is_valid_name

USER = "${user}"
STAR, SINGLE = "*", "?"

# Tokens of a key: the placeholder, a run of stars, one '?', a run of plain characters, or a '$'
# that starts no known placeholder (an error, reported with the text that follows it).
_TOKEN = re.compile(r"\$\{user\}|\*+|\?|[^*?$]+|\$\{?[^}/*?]*\}?")
# Characters a repository name may hold (upper case and ':' only in a registry host part).
_NAME_CHARS = re.compile(r"[A-Za-z0-9._:/-]+")
# Stand-ins for (*, ?, ${user}) to check that a pattern can match some valid name at all.
_SAMPLES = (("a", "a"), ("", "a"), ("a/a", "a"), ("0", "0"), ("", "/"), ("a", "/"))

# Ranks compare as tuples, greater is more specific: (exact, literal characters, '?' count,
# minus '*' count). See :meth:`Pattern.rank`.
Rank = tuple[bool, int, int, int]


class PatternError(ValueError):
    """A key that is not a repository name or a well-formed pattern; the message says why."""


@dataclass(frozen=True)
class Pattern:
    """One compiled key: what it matches and how specific it is."""

    key: str  # as written in the file
    canonical: str  # runs of '*' collapsed: keys equal here are the same key
    exact: bool  # no '*' or '?': a name (possibly with ${user} in it)
    literal: int  # characters matched literally, ${user} not counted
    users: int  # occurrences of ${user}, each counts len(user) literal characters
    singles: int
    stars: int
    prefix: str  # the literal text before the first '*', '?' or ${user}
    user_next: bool  # whether the token right after ``prefix`` is ${user}
    after_user: str  # if user_next: the literal text after that ${user}, up to the next token
    regex: re.Pattern[str] | None  # None for an exact key without ${user}

    def rank(self, user: str | None) -> Rank:
        """How specific this key is for ``user``: greater beats smaller.

        An exact key beats every pattern; then more literal characters (``${user}`` counting as
        the user's name) beat fewer; then more ``?``; then fewer ``*``.
        """
        length = len(user) if user is not None else 0
        return (self.exact, self.literal + self.users * length, self.singles, -self.stars)

    def matches(self, name: str, user: str | None) -> bool:
        """Whether the whole of ``name`` matches, ``${user}`` standing for ``user``."""
        if self.regex is None:
            return name == self.key
        if self.users:
            # The user's name is put in front of the subject and captured, so that ${user} is a
            # backreference: one compiled regex serves every user. User names hold no ':'.
            return user is not None and self.regex.fullmatch(f"{user}:{name}") is not None
        return self.regex.fullmatch(name) is not None


def _tokens(key: str) -> list[str]:
    tokens = _TOKEN.findall(key)
    for token in tokens:
        if token.startswith("$") and token != USER:
            raise PatternError(f"unknown placeholder {token!r} (the only one is {USER})")
        if token[0] not in "*?$" and not _NAME_CHARS.fullmatch(token):
            bad = next(c for c in token if not _NAME_CHARS.fullmatch(c))
            raise PatternError(f"{bad!r} is not allowed in a pattern (only *, ? and {USER})")
    return tokens


def _can_match_a_name(tokens: list[str]) -> bool:
    """Whether some valid repository name matches: tried with a few stand-ins for the tokens."""
    for star, single in _SAMPLES:
        stand_in = {USER: "a", SINGLE: single}
        text = "".join(star if t[0] == STAR else stand_in.get(t, t) for t in tokens)
        if is_valid_name(text):
            return True
    return False


def _regex_of(token: str) -> str:
    if token[0] == STAR:
        return ".*"
    return {SINGLE: ".", USER: "(?P=user)"}.get(token) or re.escape(token)


@functools.lru_cache(maxsize=65536)
def compile_pattern(key: str) -> Pattern:
    """Compile one key; raise :class:`PatternError` if it is malformed or can match nothing.

    Cached: the same key in many users' entries (``"${user}/*"``) is compiled once.
    """
    if not isinstance(key, str) or not key:
        raise PatternError(f"is not a repository name (nor a pattern with *, ? or {USER})")
    tokens = _tokens(key)
    if not _can_match_a_name(tokens):
        if any(t[0] in "*?$" for t in tokens):
            raise PatternError("is a pattern that can match no repository name")
        raise PatternError(f"is not a repository name (nor a pattern with *, ? or {USER})")
    literal = sum(len(t) for t in tokens if t[0] not in "*?$")
    users = tokens.count(USER)
    singles = tokens.count(SINGLE)
    stars = sum(1 for t in tokens if t[0] == STAR)
    canonical = "".join(STAR if t[0] == STAR else t for t in tokens)
    plain = tokens[0] if tokens[0][0] not in "*?$" else ""
    rest = tokens[1:] if plain else tokens
    user_next = bool(rest) and rest[0] == USER
    after_user = rest[1] if user_next and len(rest) > 1 and rest[1][0] not in "*?$" else ""
    regex = None
    if singles or stars or users:
        body = "".join(_regex_of(token) for token in tokens)
        regex = re.compile(("(?P<user>[^:]*):" if users else "") + body, re.DOTALL)
    return Pattern(
        key=key,
        canonical=canonical,
        exact=not (singles or stars),
        literal=literal,
        users=users,
        singles=singles,
        stars=stars,
        prefix=plain,
        user_next=user_next,
        after_user=after_user,
        regex=regex,
    )
