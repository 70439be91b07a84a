"""Who may do what: requested ∩ allowed, per resource. A pure function of its inputs.

For a repository, the most specific of the keys of the user and of their groups that matches the
name decides (:mod:`.rules`: an exact name, then the pattern with the most literal characters,
``"*"`` last; equally specific keys are united); when none matches, the anonymous rule of
``repositories.json`` does. The catalog (``registry:catalog:*``) is granted only through
``"catalog": true`` on the user or one of their groups, as the registry treats listing every
repository as administrative. Unknown resource types and actions are never granted.

Every :class:`Grant` carries the :class:`.rules.Reason` for it, so the token service and the
``explain`` command run this one function and cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from auth_service.access import actions as act
from auth_service.access.rules import Origin, Reason, best
from auth_service.access.scopes import ResourceRequest
from auth_service.files.anonymous import AnonymousAccess
from auth_service.files.groups import GROUPS_FILE
from auth_service.files.users import USERS_FILE, User

REPOSITORY, REGISTRY, CATALOG = "repository", "registry", "catalog"
_NO_CATALOG = Reason(note='catalog: needs "catalog": true on the user or a group')
_CATALOG_STAR_ONLY = Reason(note="catalog: only the action '*' exists")
_UNKNOWN_TYPE = Reason(note="unknown resource type: never granted")


@dataclass(frozen=True)
class Grant:
    """The access one token gives on one resource (possibly none), and why."""

    type: str
    name: str
    actions: tuple[str, ...]
    reason: Reason = field(default=Reason(), compare=False)

    def claim(self) -> dict[str, object]:
        """The entry of the JWT ``access`` claim."""
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}

    def scope(self) -> str:
        """This grant in scope syntax, ``type:name:action,...`` (the audit log, OAuth2's scope)."""
        return f"{self.type}:{self.name}:{','.join(self.actions)}"


def repository_decision(
    user: User | None, name: str, anonymous: AnonymousAccess
) -> tuple[frozenset[str], Reason]:
    """Everything ``user`` (None: anonymous) may do on repository ``name``, ``*`` expanded, and
    the rules that decided it.

    Only the user's own rules and their groups' are looked at: the cost does not grow with the
    number of users.
    """
    if user is not None:
        match = best(
            rules.lookup(name, user.name)
            for rules in (user.rules, *(group.rules for group in user.groups))
        )
        if match is not None:
            return act.expand(match.actions), Reason(match.origins)
    return anonymous.decide(name)


def catalog_origins(user: User | None) -> tuple[Origin, ...]:
    """Where ``"catalog": true`` was given to ``user``: their entry and their groups'."""
    if user is None:
        return ()
    own = (Origin(USERS_FILE, user.name, CATALOG),) if user.catalog else ()
    return own + tuple(Origin(GROUPS_FILE, g.name, CATALOG) for g in user.groups if g.catalog)


def _intersect(requested: frozenset[str], allowed: frozenset[str]) -> tuple[str, ...]:
    """Requested ∩ allowed. ``*`` asked for is answered with ``*`` only when all is allowed."""
    if act.ALL in requested:
        if allowed >= set(act.REPOSITORY_ACTIONS):
            return (act.ALL,)
        return tuple(act.ordered(allowed))
    return tuple(act.ordered(requested & allowed))


def grant_one(user: User | None, request: ResourceRequest, anonymous: AnonymousAccess) -> Grant:
    """The grant for one requested resource, with the reason for it."""
    if request.type == REPOSITORY:
        allowed, reason = repository_decision(user, request.name, anonymous)
        granted = _intersect(request.actions, allowed)
    elif (request.type, request.name) == (REGISTRY, CATALOG):
        origins = catalog_origins(user)
        may_list = bool(origins) and act.ALL in request.actions
        granted = (act.ALL,) if may_list else ()
        reason = Reason(origins) if may_list else (_CATALOG_STAR_ONLY if origins else _NO_CATALOG)
    else:
        granted, reason = (), _UNKNOWN_TYPE
    return Grant(request.type, request.name, granted, reason)


def grant_access(
    user: User | None, requests: Iterable[ResourceRequest], anonymous: AnonymousAccess
) -> list[Grant]:
    """The access for a token: one grant per requested resource, in the order asked."""
    return [grant_one(user, request, anonymous) for request in requests]
