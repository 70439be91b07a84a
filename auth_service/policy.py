"""Who may do what: requested ∩ allowed, per resource. A pure function of its inputs.

For a repository, a user's exact entry decides, else their ``"*"`` entry, else the anonymous rule
of ``repositories.json``. The catalog (``registry:catalog:*``) is granted only to users with
``"catalog": true``, as the registry treats listing every repository as administrative. Unknown
resource types and actions are never granted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import actions as act
from .repositories import AnonymousAccess
from .scopes import ResourceRequest
from .users import User

REPOSITORY, REGISTRY, CATALOG = "repository", "registry", "catalog"


@dataclass(frozen=True)
class Grant:
    """The access one token gives on one resource (possibly none)."""

    type: str
    name: str
    actions: tuple[str, ...]

    def claim(self) -> dict[str, object]:
        """The entry of the JWT ``access`` claim."""
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


def allowed_repository_actions(
    user: User | None, name: str, anonymous: AnonymousAccess
) -> frozenset[str]:
    """Everything ``user`` (None: anonymous) may do on repository ``name``, ``*`` expanded."""
    if user is not None:
        for key in (name, act.ALL):
            if key in user.repositories:
                return act.expand(user.repositories[key])
    return anonymous.actions_for(name)


def _intersect(requested: frozenset[str], allowed: frozenset[str]) -> tuple[str, ...]:
    """Requested ∩ allowed. ``*`` asked for is answered with ``*`` only when all is allowed."""
    if act.ALL in requested:
        if allowed >= set(act.REPOSITORY_ACTIONS):
            return (act.ALL,)
        return tuple(act.ordered(allowed))
    return tuple(act.ordered(requested & allowed))


def grant_one(user: User | None, request: ResourceRequest, anonymous: AnonymousAccess) -> Grant:
    """The grant for one requested resource."""
    if request.type == REPOSITORY:
        allowed = allowed_repository_actions(user, request.name, anonymous)
        granted = _intersect(request.actions, allowed)
    elif (request.type, request.name) == (REGISTRY, CATALOG):
        may_list = user is not None and user.catalog and act.ALL in request.actions
        granted = (act.ALL,) if may_list else ()
    else:
        granted = ()
    return Grant(request.type, request.name, granted)


def grant_access(
    user: User | None, requests: Iterable[ResourceRequest], anonymous: AnonymousAccess
) -> list[Grant]:
    """The access for a token: one grant per requested resource, in the order asked."""
    return [grant_one(user, request, anonymous) for request in requests]
