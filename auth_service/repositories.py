"""``repositories.json``: which repositories anonymous clients may pull.

    {"blacklist": false, "repositories": ["public-image"]}

``false`` makes the list a whitelist (only these are public), ``true`` a blacklist (all but these
are). The original service spelled the key ``backlist``; it is still read, with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .actions import PULL
from .errors import ConfigError
from .jsonfile import read_json
from .scopes import is_valid_name

log = logging.getLogger(__name__)

_KEYS = {"blacklist", "backlist", "repositories"}


@dataclass(frozen=True)
class AnonymousAccess:
    """The anonymous pull rule: a whitelist or a blacklist of repository names."""

    blacklist: bool
    repositories: frozenset[str]

    def actions_for(self, name: str) -> frozenset[str]:
        """What an anonymous client may do on repository ``name``: pull, or nothing."""
        listed = name in self.repositories
        return frozenset((PULL,)) if listed != self.blacklist else frozenset()


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
        if not isinstance(name, str) or not is_valid_name(name):
            raise ConfigError(str(path), "repositories", f"{name!r} is not a repository name")
    return AnonymousAccess(any(modes.values()), frozenset(names))


def load_repositories(path: Path) -> AnonymousAccess:
    """Read and validate ``repositories.json``."""
    return parse_repositories(path, read_json(path))
