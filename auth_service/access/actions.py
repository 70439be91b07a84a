"""The repository actions a grant may name, and their canonical order in tokens."""

from __future__ import annotations

from collections.abc import Iterable

PULL, PUSH, DELETE, ALL = "pull", "push", "delete", "*"
REPOSITORY_ACTIONS = (PULL, PUSH, DELETE)
# What a grant may name, in the order messages and metrics list them.
GRANTABLE = (*REPOSITORY_ACTIONS, ALL)


def expand(actions: Iterable[str]) -> frozenset[str]:
    """Replace ``*`` by the concrete actions it stands for."""
    actions = frozenset(actions)
    return frozenset(REPOSITORY_ACTIONS) if ALL in actions else actions


def ordered(actions: Iterable[str]) -> list[str]:
    """Actions in a stable order: pull, push, delete, then anything else alphabetically."""
    rank = {action: index for index, action in enumerate(REPOSITORY_ACTIONS)}
    return sorted(set(actions), key=lambda a: (rank.get(a, len(rank)), a))
