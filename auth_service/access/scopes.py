"""The scope grammar of the Distribution auth spec: parse, merge, and format.

    scope         := resourcescope [ ' ' resourcescope ]*
    resourcescope := resourcetype ":" resourcename ":" action [ ',' action ]*

A resource name may itself hold one ``:`` (``localhost:5000/team/app``), so the type is what
precedes the first colon and the actions what follows the last; the name is everything between.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# The spec's resource class (``repository(plugin)``) is deprecated and ignored by registries,
# which only match the bare type; it is parsed and dropped.
_TYPE = re.compile(r"([a-z0-9]+)(?:\([a-z0-9]+\))?")
_ACTION = re.compile(r"[a-z]*|\*")

# reference.NameRegexp of distribution, anchored: an optional host[:port] then lowercase path
# components separated by '/'.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_NAME = re.compile(rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
NAME_MAX_LENGTH = 255


class ScopeError(ValueError):
    """A scope that does not follow the grammar; the message says which and why."""


@dataclass(frozen=True)
class ResourceRequest:
    """One resource and the actions asked for it, duplicates already merged."""

    type: str
    name: str
    actions: frozenset[str]


def is_valid_name(name: str) -> bool:
    """Whether ``name`` is a repository name the registry itself would accept."""
    return len(name) <= NAME_MAX_LENGTH and _NAME.fullmatch(name) is not None


def parse_resource_scope(text: str) -> ResourceRequest:
    """Parse one ``type:name:actions`` item; raise :class:`ScopeError` when it is malformed."""
    resource_type, colon, rest = text.partition(":")
    name, colon2, action_list = rest.rpartition(":")
    if not colon or not colon2:
        raise ScopeError(f"scope {text!r} is not of the form type:name:actions")
    type_match = _TYPE.fullmatch(resource_type)
    if type_match is None:
        raise ScopeError(f"scope {text!r}: {resource_type!r} is not a resource type")
    if not is_valid_name(name):
        raise ScopeError(f"scope {text!r}: {name!r} is not a valid resource name")
    actions = action_list.split(",")
    for action in actions:
        if _ACTION.fullmatch(action) is None:
            raise ScopeError(f"scope {text!r}: {action!r} is not an action")
    return ResourceRequest(type_match.group(1), name, frozenset(a for a in actions if a))


def parse_scopes(values: Iterable[str]) -> list[ResourceRequest]:
    """Parse every ``scope`` value (each may hold space-separated scopes) and merge duplicates.

    The same resource asked for twice, in any action order, becomes one request for the union of
    the actions: clients merge the registry's challenge with their own scopes and may repeat one.
    Order of first appearance is kept, so tokens list resources as they were asked for.
    """
    merged: dict[tuple[str, str], set[str]] = {}
    for value in values:
        for item in value.split():
            request = parse_resource_scope(item)
            merged.setdefault((request.type, request.name), set()).update(request.actions)
    return [ResourceRequest(t, n, frozenset(actions)) for (t, n), actions in merged.items()]
