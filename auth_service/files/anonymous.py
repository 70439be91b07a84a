"""``repositories.json``: which repositories anonymous clients may pull.

    {"blacklist": false, "repositories": ["public-image"]}

``false`` makes the list a whitelist (only these are public), ``true`` a blacklist (all but these
are). Entries may be patterns (``"public/*"``, :mod:`auth_service.access.patterns`), but not
``${user}``: anonymous clients have no name. The original service spelled the key ``backlist``;
it is still read, with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auth_service.access.actions import PULL
from auth_service.access.patterns import USER, PatternError, compile_pattern
from auth_service.access.rules import Reason, RuleSet
from auth_service.errors import ConfigError
from auth_service.files.jsonfile import read_json
from auth_service.files.settings import REPOSITORIES_FILE

_PULL_ONLY = frozenset((PULL,))
_NOT_LISTED = Reason(note="anonymous policy: not listed")
_NOT_BLACKLISTED = Reason(note="anonymous policy: not blacklisted")

log = logging.getLogger(__name__)

_KEYS = {"blacklist", "backlist", "repositories"}


@dataclass(frozen=True)
class AnonymousAccess:
    """The anonymous pull rule: a whitelist or a blacklist of repository names."""

    blacklist: bool
    repositories: frozenset[str]
    rules: RuleSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        mode = "blacklist" if self.blacklist else "whitelist"
        grants = {name: _PULL_ONLY for name in self.repositories}
        object.__setattr__(self, "rules", RuleSet.from_grants(grants, REPOSITORIES_FILE, mode))

    def decide(self, name: str) -> tuple[frozenset[str], Reason]:
        """What an anonymous client may do on repository ``name`` (pull, or nothing), and why."""
        match = self.rules.lookup(name, None)
        if match is None:
            if self.blacklist:
                return _PULL_ONLY, _NOT_BLACKLISTED
            return frozenset(), _NOT_LISTED
        # The most specific listed entry is the one reported; any listed entry decides alike.
        reason = Reason(match.origins[:1])
        return (frozenset() if self.blacklist else _PULL_ONLY), reason


def parse_repositories(path: Path, document: Any) -> AnonymousAccess:
    """Validate a decoded ``repositories.json``; raise :class:`ConfigError` naming the key."""
    if not isinstance(document, dict):
        raise ConfigError(
            str(path),
            None,
            'must be a JSON object like {"blacklist": false, "repositories": [...]}',
        )
    unknown = set(document) - _KEYS
    if unknown:
        raise ConfigError(
            str(path), sorted(unknown)[0], "unknown key (allowed: blacklist, repositories)"
        )
    modes = {key: document[key] for key in ("blacklist", "backlist") if key in document}
    for key, value in modes.items():
        if not isinstance(value, bool):
            raise ConfigError(str(path), key, "must be true or false")
    if len(set(modes.values())) > 1:
        raise ConfigError(str(path), "backlist", "contradicts blacklist; keep only blacklist")
    if "backlist" in modes:
        log.warning("%s: 'backlist' is the old spelling of 'blacklist'; please rename it", path)
    names = document.get("repositories", [])
    if not isinstance(names, list):
        raise ConfigError(str(path), "repositories", "must be a list of repository names")
    for name in names:
        if not isinstance(name, str):
            raise ConfigError(str(path), "repositories", f"{name!r} is not a repository name")
        try:
            pattern = compile_pattern(name)
        except PatternError as exc:
            raise ConfigError(str(path), "repositories", f"{name!r} {exc}") from None
        if pattern.users:
            raise ConfigError(
                str(path), "repositories", f"{name!r}: {USER} has no meaning for anonymous clients"
            )
    return AnonymousAccess(any(modes.values()), frozenset(names))


def load_repositories(path: Path) -> AnonymousAccess:
    """Read and validate ``repositories.json``."""
    return parse_repositories(path, read_json(path))
