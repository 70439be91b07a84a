"""``groups.json``: rights shared by several users. Optional: a missing file means no groups.

    {"developers": {"repositories": {"team/*": ["pull", "push"]}, "catalog": false}}

A user names their groups in ``users.json`` (``"groups": ["developers"]``). A group's keys compete
with the user's own by specificity (:mod:`auth_service.access.rules`); ``${user}`` in a group's
key stands for the member the rule is applied for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auth_service.access.rules import RuleSet, parse_grants
from auth_service.errors import ConfigError
from auth_service.files.jsonfile import read_json
from auth_service.files.settings import GROUPS_FILE

_GROUP_KEYS = {"repositories", "catalog"}


@dataclass(frozen=True)
class Group:
    """One group: its grants per repository key, and whether members may list the catalog."""

    name: str
    repositories: Mapping[str, frozenset[str]]
    catalog: bool = False
    rules: RuleSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Compiled once per group, shared by every member.
        object.__setattr__(
            self, "rules", RuleSet.from_grants(self.repositories, GROUPS_FILE, self.name)
        )


def _parse_group(path: Path, name: Any, entry: Any) -> Group:
    where = f"group {name!r}"
    if not isinstance(name, str) or not name or name != name.strip():
        raise ConfigError(str(path), where, "group names must be non-empty, without edge spaces")
    if not isinstance(entry, dict):
        raise ConfigError(str(path), where, "must be an object with repositories and catalog")
    unknown = set(entry) - _GROUP_KEYS
    if unknown:
        raise ConfigError(
            str(path),
            where,
            f"unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(_GROUP_KEYS))})",
        )
    grants = parse_grants(path, where, entry.get("repositories", {}))
    catalog = entry.get("catalog", False)
    if not isinstance(catalog, bool):
        raise ConfigError(str(path), f"{where}: catalog", "must be true or false")
    return Group(name, grants, catalog)


def parse_groups(path: Path, document: Any) -> dict[str, Group]:
    """Validate a decoded ``groups.json``; raise :class:`ConfigError` naming the group and key."""
    if not isinstance(document, dict):
        raise ConfigError(str(path), None, "must be a JSON object of group name: settings")
    return {name: _parse_group(path, name, entry) for name, entry in document.items()}


def load_groups(path: Path) -> dict[str, Group]:
    """Read and validate ``groups.json``; no file, no groups."""
    if not path.exists():
        return {}
    return parse_groups(path, read_json(path))
