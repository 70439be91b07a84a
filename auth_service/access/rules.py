"""Compiled repository rules of one user, group or anonymous list, and the most specific match.

The keys of one owner are indexed when the file loads, so a lookup never scans every key:

- exact names (no ``*``, ``?`` or ``${user}``) are one dictionary lookup;
- patterns are bucketed by their literal prefix (``team/`` for ``team/*``), and a lookup only
  tries the buckets whose prefix starts the requested name, one dictionary lookup per distinct
  prefix length;
- patterns whose prefix is followed by ``${user}`` are bucketed by the prefix and then by the
  literal after the placeholder, tried only when the user's name stands at that place.

Of the matching keys the most specific wins (:meth:`.patterns.Pattern.rank`); keys of equal rank
(the same key in a user and a group, or different keys equally specific) apply together: their
actions are united.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auth_service.access.actions import GRANTABLE
from auth_service.access.patterns import Pattern, PatternError, Rank, compile_pattern
from auth_service.errors import ConfigError


@dataclass(frozen=True)
class Origin:
    """Where a rule was written: the file, its owner (user, group or list), and the key."""

    file: str
    owner: str
    key: str

    def __str__(self) -> str:
        return f"{self.file}: {self.owner}: {json.dumps(self.key)}"


@dataclass(frozen=True)
class Reason:
    """Why a decision was taken: the rules that decided it, or a note when no rule did."""

    origins: tuple[Origin, ...] = ()
    note: str = ""

    def __str__(self) -> str:
        return "; ".join(str(origin) for origin in self.origins) or self.note


@dataclass(frozen=True)
class Rule:
    """One key of one owner: its compiled pattern and the actions as written."""

    pattern: Pattern
    actions: frozenset[str]
    origins: tuple[Origin, ...]


@dataclass(frozen=True)
class Match:
    """The winning rules for one name: their rank, united actions and origins."""

    rank: Rank
    actions: frozenset[str]
    origins: tuple[Origin, ...]


def best(matches: Iterable[Match | None]) -> Match | None:
    """The most specific of several matches; equally specific ones are united."""
    winner: Match | None = None
    for match in matches:
        if match is None:
            continue
        if winner is None or match.rank > winner.rank:
            winner = match
        elif match.rank == winner.rank:
            winner = Match(
                winner.rank, winner.actions | match.actions, winner.origins + match.origins
            )
    return winner


@dataclass(frozen=True)
class _PrefixIndex:
    """Rules by literal prefix, with the prefix lengths present, shortest first."""

    buckets: Mapping[str, tuple[Rule, ...]]
    lengths: tuple[int, ...]

    @classmethod
    def build(cls, rules: Iterable[tuple[str, Rule]]) -> _PrefixIndex:
        buckets: dict[str, list[Rule]] = {}
        for prefix, rule in rules:
            buckets.setdefault(prefix, []).append(rule)
        frozen = {prefix: tuple(group) for prefix, group in buckets.items()}
        return cls(frozen, tuple(sorted({len(prefix) for prefix in frozen})))

    def candidates(self, text: str, start: int = 0) -> Iterator[Rule]:
        """The rules whose prefix is found in ``text`` at ``start``."""
        for length in self.lengths:
            end = start + length
            if end > len(text):
                break
            bucket = self.buckets.get(text[start:end])
            if bucket:
                yield from bucket


_EMPTY_INDEX = _PrefixIndex({}, ())


@dataclass(frozen=True)
class RuleSet:
    """The compiled keys of one owner, indexed; see the module docstring."""

    exact: Mapping[str, Rule]
    patterns: _PrefixIndex
    user_patterns: Mapping[str, _PrefixIndex]  # prefix before ${user} -> literal after it
    user_prefix_lengths: tuple[int, ...]
    user_exact: bool  # some exact key holds ${user}: an exact hit must still look at those

    @classmethod
    def build(cls, rules: Iterable[Rule]) -> RuleSet:
        """Index ``rules``; rules whose keys are equal once ``**`` is read as ``*`` are united."""
        merged: dict[str, Rule] = {}
        for rule in rules:
            same = merged.get(rule.pattern.canonical)
            if same is not None:
                rule = Rule(same.pattern, same.actions | rule.actions, same.origins + rule.origins)
            merged[rule.pattern.canonical] = rule
        exact = {r.pattern.key: r for r in merged.values() if r.pattern.regex is None}
        plain = [(r.pattern.prefix, r) for r in merged.values() if _is_plain(r.pattern)]
        by_user: dict[str, list[tuple[str, Rule]]] = {}
        for rule in merged.values():
            if rule.pattern.user_next:
                by_user.setdefault(rule.pattern.prefix, []).append((rule.pattern.after_user, rule))
        return cls(
            exact=exact,
            patterns=_PrefixIndex.build(plain) if plain else _EMPTY_INDEX,
            user_patterns={prefix: _PrefixIndex.build(group) for prefix, group in by_user.items()},
            user_prefix_lengths=tuple(sorted({len(prefix) for prefix in by_user})),
            user_exact=any(r.pattern.exact and r.pattern.users for r in merged.values()),
        )

    @classmethod
    def from_grants(cls, grants: Mapping[str, Iterable[str]], file: str, owner: str) -> RuleSet:
        """Compile ``{key: actions}`` of one owner; raise :class:`PatternError` on a bad key."""
        return cls.build(
            Rule(compile_pattern(key), frozenset(actions), (Origin(file, owner, key),))
            for key, actions in grants.items()
        )

    def candidates(self, name: str, user: str | None) -> Iterator[Rule]:
        """Every pattern rule that may match ``name``: the index's buckets, nothing else."""
        yield from self.patterns.candidates(name)
        if user is None or not self.user_patterns:
            return
        for length in self.user_prefix_lengths:
            if length > len(name):
                break
            inner = self.user_patterns.get(name[:length])
            if inner is not None and name.startswith(user, length):
                yield from inner.candidates(name, length + len(user))

    def lookup(self, name: str, user: str | None) -> Match | None:
        """The most specific of this owner's keys matching ``name`` for ``user``, if any."""
        hit = self.exact.get(name)
        if hit is not None and not self.user_exact:
            return _match(hit, user)
        found = [_match(hit, user)] if hit is not None else []
        found.extend(
            _match(r, user) for r in self.candidates(name, user) if r.pattern.matches(name, user)
        )
        return best(found)


def _is_plain(pattern: Pattern) -> bool:
    """A pattern with wildcards whose literal prefix is not followed by ${user}."""
    return pattern.regex is not None and not pattern.user_next


def _match(rule: Rule, user: str | None) -> Match:
    return Match(rule.pattern.rank(user), rule.actions, rule.origins)


def parse_grants(path: Path, where: str, document: Any) -> dict[str, frozenset[str]]:
    """Validate a ``"repositories"`` object ``{key: [actions]}`` of a user or group.

    Raises :class:`ConfigError` naming the file, ``where`` (the user or group) and the key.
    """
    if not isinstance(document, dict):
        raise ConfigError(
            str(path), f"{where}: repositories", "must be an object of name: [actions]"
        )
    grants = {}
    for key, actions in document.items():
        at = f"{where}: repositories: {key!r}"
        try:
            compile_pattern(key)
        except PatternError as exc:
            raise ConfigError(str(path), at, str(exc)) from None
        if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
            raise ConfigError(str(path), at, "must be a list of actions")
        unknown = [a for a in actions if a not in GRANTABLE]
        if unknown:
            allowed = ", ".join(GRANTABLE)
            raise ConfigError(str(path), at, f"unknown action {unknown[0]!r} (allowed: {allowed})")
        grants[key] = frozenset(actions)
    return grants
