"""``users.json``: the user directory, and password verification that doesn't leak who exists.

Format of the original service, which still means what it meant::

    {"alice": {"pass_hash": "$2b$12$...", "repositories": {"team/app": ["pull", "push"],
                                                          "*": ["pull"]},
               "catalog": false}}

On top of it, repository keys may be patterns (:mod:`auth_service.access.patterns`),
``"groups": [...]`` names groups of ``groups.json`` (:mod:`.groups`) whose rights the user
shares, and ``"refresh_tokens": false`` denies the user refresh tokens.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from auth_service.access.rules import RuleSet, parse_grants
from auth_service.errors import ConfigError
from auth_service.files.groups import GROUPS_FILE, Group
from auth_service.files.jsonfile import read_json
from auth_service.files.settings import USERS_FILE

# bcrypt's modular-crypt format; $2y$ is what Apache's `htpasswd -B` writes.
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
BCRYPT_MAX_PASSWORD_BYTES = 72
DEFAULT_BCRYPT_COST = 12
# The target cost callers pass that only validate a users.json and never check a password with
# it (the command line, `config check`). Dummy hashes are made on a first check only, so None
# would do as well.
VALIDATION_ONLY_COST = 4
_USER_KEYS = {"pass_hash", "repositories", "catalog", "groups", "refresh_tokens"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class User:
    """One account: its hash, its grants per repository key, whether it may list the catalog,
    the groups whose rights it shares, and whether a login may give it a refresh token.

    Without refresh tokens, ``docker login`` stores the password in ``config.json`` instead of
    an ``identitytoken``; an imagePullSecret made from that file needs it, as kubelet ignores
    identity tokens.
    """

    name: str
    pass_hash: bytes = field(repr=False)
    repositories: Mapping[str, frozenset[str]]
    catalog: bool = False
    groups: tuple[Group, ...] = ()
    refresh_tokens: bool = True
    rules: RuleSet = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Compiled here, once per loaded file, so that a request only looks keys up.
        object.__setattr__(
            self, "rules", RuleSet.from_grants(self.repositories, USERS_FILE, self.name)
        )


@functools.cache
def _dummy_hash(cost: int) -> bytes:
    """A hash of a random secret at ``cost``, checked for unknown users so they cost as much as
    known ones. Made on first use and kept for the process: one per cost."""
    return bcrypt.hashpw(os.urandom(16), bcrypt.gensalt(cost))


# What :class:`UserDirectory` is given, derived from the signing key, to choose unknown names'
# costs with (``TokenSigner.derive_secret(UNKNOWN_NAME_KEY_LABEL)``).
UNKNOWN_NAME_KEY_LABEL = b"users.json: the dummy bcrypt cost of each unknown user name"


def _key_from_hashes(users: Mapping[str, User]) -> bytes:
    """A key only those who can read ``users.json`` can make: a digest of all its hashes (each
    carries a random salt). The same in every worker and after a restart, for one version of
    the file."""
    digest = hashlib.sha256(b"unknown-name key\0")
    for name in sorted(users):
        digest.update(users[name].pass_hash + b"\0")
    return digest.digest()


def bcrypt_cost(pass_hash: bytes) -> int:
    """The cost factor written in a bcrypt hash."""
    return int(pass_hash[4:6])


def hash_costs(document: Any) -> Counter[int]:
    """How many well-formed bcrypt hashes a decoded ``users.json`` has at each cost (the rest is
    the loader's to refuse)."""
    costs: Counter[int] = Counter()
    for entry in document.values() if isinstance(document, dict) else ():
        pass_hash = entry.get("pass_hash") if isinstance(entry, dict) else None
        if isinstance(pass_hash, str) and _BCRYPT_HASH.fullmatch(pass_hash):
            costs[bcrypt_cost(pass_hash.encode())] += 1
    return costs


def rehash_target(costs: Mapping[int, int], configured: int | None) -> int:
    """The cost hashes are rehashed to, from the count of hashes at each cost: ``configured``
    (``BCRYPT_COST``) if set, else the cost most hashes have (the higher one on a tie), else
    :data:`DEFAULT_BCRYPT_COST`."""
    if configured:
        return configured
    if costs:
        return max(costs, key=lambda cost: (costs[cost], cost))
    return DEFAULT_BCRYPT_COST


class UserDirectory:
    """The users of one version of ``users.json``, and the password check against them.

    ``target_cost`` is the cost hashes should have (``BCRYPT_COST``): a successful login with a
    hash of another cost is rehashed (:meth:`rehash_cost`, :mod:`auth_service.passwords.rehash`).
    None: the cost most hashes have (:func:`rehash_target`).

    **Unknown names cost what known ones do.** A known user with a wrong password costs one
    bcrypt check at the cost of that user's hash, so an unknown name costs one check against a
    dummy hash at a cost drawn from the file's own mix, each cost as often as the file's users
    have it, and the same cost for the same name every time (:meth:`unknown_name_cost`): timing
    a name, once or many times, tells the same as timing a known user. A single dummy cost (say
    the most common one) would give away every user whose hash has another.

    The draw is an HMAC of the name under ``name_key``, which must be secret (whoever can
    compute the draw knows the cost an unknown name gets, and any name timed at another cost
    exists) and the same in every worker and after restarts (a name whose cost changed between
    two workers or two days would be an unknown one: a known user's changes only when the user
    is rehashed). Pass a key derived from the signing key (:data:`UNKNOWN_NAME_KEY_LABEL`): as
    secret as the key, the same in every instance that signs with it, across every version of
    ``users.json``. Without one the key is a digest of the file's hashes: as secret as
    ``users.json`` (whoever reads it knows the users anyway), the same in all workers and after
    restarts, but drawn afresh when any hash changes; once the file has converged on one cost
    (:meth:`rehash_cost`) every unknown name gets that cost and the key no longer matters.

    The costs are laid out with the target cost first, so that under one key, while the file
    converges (its share of hashes at the target cost grows), unknown names move to the target
    cost and never back, as known users do.
    """

    def __init__(
        self,
        users: Mapping[str, User],
        target_cost: int | None = None,
        *,
        name_key: bytes | None = None,
    ) -> None:
        self.users = dict(users)
        self._target_cost = target_cost
        self._name_key = _key_from_hashes(self.users) if name_key is None else name_key
        # Made before the first check (the service calls make_dummy_hashes when it loads the
        # file): a first unknown name must not cost more than a first known one. Callers that
        # only validate a file never make them.
        self._dummy_hashes: dict[int, bytes] | None = None

    def __len__(self) -> int:
        return len(self.users)

    @functools.cached_property
    def _costs(self) -> tuple[int, tuple[tuple[int, int], ...], int]:
        """(target cost, (cost, count of hashes) with the target first, total count); counted
        on first use: callers that only validate a file never need it."""
        counts = Counter(bcrypt_cost(user.pass_hash) for user in self.users.values())
        target = rehash_target(counts, self._target_cost)
        ordered = sorted(counts, key=lambda cost: (cost != target, cost))
        mix = tuple((cost, counts[cost]) for cost in ordered) or ((target, 1),)
        return target, mix, sum(count for _, count in mix)

    @property
    def target_cost(self) -> int:
        """The cost hashes are rehashed to: ``BCRYPT_COST``, else the most common one."""
        return self._costs[0]

    def get(self, name: str) -> User | None:
        return self.users.get(name)

    def unknown_name_cost(self, name: str) -> int:
        """The bcrypt cost of the dummy check for ``name`` if it is not a user: one of the
        file's costs, each drawn as often as the file's hashes have it, always the same for the
        same name (see the class)."""
        _, mix, total = self._costs
        if len(mix) == 1:
            return mix[0][0]
        keyed = hmac.new(self._name_key, name.encode("utf-8", "surrogatepass"), hashlib.sha256)
        point = int.from_bytes(keyed.digest()[:8], "big") * total >> 64
        for cost, count in mix:
            if point < count:
                return cost
            point -= count
        raise AssertionError("the point lies within the total")

    def rehash_cost(self, user: User) -> int | None:
        """The cost to rehash ``user``'s hash to after a successful login, or None if it has it
        already. Cheap: call it on every successful bcrypt check."""
        return None if bcrypt_cost(user.pass_hash) == self.target_cost else self.target_cost

    def make_dummy_hashes(self) -> None:
        """Make the dummy hashes of the file's costs now (each cost once per process), so that
        no login pays for them: at start-up in uWSGI's master, whose workers inherit them."""
        self._dummies()

    def _dummies(self) -> dict[int, bytes]:
        if self._dummy_hashes is None:
            self._dummy_hashes = {cost: _dummy_hash(cost) for cost, _ in self._costs[1]}
        return self._dummy_hashes

    def verify_password(self, username: str, password: str) -> User | None:
        """The user if the password is theirs, else None, in the same time either way.

        Unknown users run one bcrypt check against a dummy hash at :meth:`unknown_name_cost`,
        and passwords bcrypt can't check (over 72 bytes, or with a NUL) one at the user's cost,
        so the answer time doesn't tell which users exist.
        """
        dummies = self._dummies()
        user = self.users.get(username)
        secret = password.encode("utf-8", "surrogatepass")
        usable = len(secret) <= BCRYPT_MAX_PASSWORD_BYTES and b"\0" not in secret
        if user is not None and usable:
            expected = user.pass_hash
        elif user is not None:
            expected = dummies[bcrypt_cost(user.pass_hash)]
        else:
            expected = dummies[self.unknown_name_cost(username)]
        matched = bcrypt.checkpw(secret if usable else b"", expected)
        return user if matched and user is not None and usable else None


def _fail(path: Path, where: str, problem: str) -> ConfigError:
    return ConfigError(str(path), where, problem)


def _member_of(
    path: Path, where: str, names: Any, groups: Mapping[str, Group]
) -> tuple[Group, ...]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _fail(path, f"{where}: groups", "must be a list of group names")
    for group in names:
        if group not in groups:
            known = (
                f"{GROUPS_FILE} defines: {', '.join(sorted(groups))}"
                if groups
                else f"there is no {GROUPS_FILE} or it defines none"
            )
            raise _fail(path, f"{where}: groups", f"unknown group {group!r} ({known})")
    return tuple(groups[group] for group in dict.fromkeys(names))


# --- user names ---------------------------------------------------------------------------------

MAX_USER_NAME_LENGTH = 256
USER_NAME_RULE = (
    f"a user name is 1 to {MAX_USER_NAME_LENGTH} printable characters, without ':' and without a "
    "space at either end"
)
_SHOWN_NAME_LENGTH = 64
# What is not printable, by Unicode category (str.isprintable refuses C* and Z* but the space).
_UNPRINTABLE_KINDS = {
    "Cc": "a control character",
    "Cf": "a format character (such as a bidirectional control)",
    "Cs": "a surrogate",
    "Co": "a private-use character",
    "Cn": "an unassigned code point",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Zs": "a space other than U+0020",
}
# Cyrillic and Greek letters that look like Latin ones. NFKC and case folding keep them apart
# (they are other letters), so a name written with them would pass for another user's. A small
# map of the common ones, not Unicode's whole confusables list: digits and letter pairs such as
# 0/O, 1/l or rn/m are not covered.
_LOOK_ALIKE_LETTERS = str.maketrans(
    {
        **dict(zip("АВЕЅІЈКМНОРСТХҮԚԜӀ", "ABESIJKMHOPCTXYQWI", strict=True)),
        **dict(zip("аеорсухѕіјһԁԛԝӏѵ", "aeopcyxsijhdqwlv", strict=True)),
        **dict(zip("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "ABEZHIKMNOPTYX", strict=True)),
        **dict(zip("αορικνυχϲϳγ", "aopikvuxcjy", strict=True)),
        **dict(zip("ıɑɡ", "iag", strict=True)),
    }
)


def shown_name(name: str) -> str:
    """``name`` quoted for a terminal or a log line: every unprintable character escaped (as
    ``repr`` does), and cut short if long."""
    if len(name) <= _SHOWN_NAME_LENGTH:
        return repr(name)
    return f"{name[:_SHOWN_NAME_LENGTH]!r}... ({len(name)} characters)"


def escape_unprintable(text: str) -> str:
    """``text`` with each unprintable character written as its Python escape (``\\x1b``)."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def user_name_problem(name: Any) -> str | None:
    """What breaks :data:`USER_NAME_RULE` in ``name``, or None if it is a good user name."""
    if not isinstance(name, str) or not name:
        return "is empty"
    if len(name) > MAX_USER_NAME_LENGTH:
        return f"is {len(name)} characters long"
    if ":" in name:
        return "contains ':', which ends the user name in Basic credentials"
    for char in name:
        if not char.isprintable():
            kind = _UNPRINTABLE_KINDS.get(unicodedata.category(char), "unprintable")
            return f"contains U+{ord(char):04X}, {kind}"
    if name != name.strip(" "):
        return "begins or ends with a space"
    return None


def name_skeleton(name: str) -> str:
    """What ``name`` looks like, for finding names easily taken for one another: NFKC
    normalised, common Cyrillic and Greek look-alikes replaced by their Latin letter, and case
    folded ("Alice", "alice", "ａｌｉｃｅ" and Cyrillic "аlice" are all "alice")."""
    # Decomposed, so that an accented look-alike (Cyrillic "ё") becomes the Latin one ("ë").
    decomposed = unicodedata.normalize("NFKD", name).translate(_LOOK_ALIKE_LETTERS)
    return unicodedata.normalize("NFKC", decomposed.casefold())


def look_alike_names(names: Iterable[str]) -> list[tuple[str, str]]:
    """(earlier, later) for each name with the same :func:`name_skeleton` as an earlier one."""
    first_by_skeleton: dict[str, str] = {}
    pairs = []
    for name in names:
        earlier = first_by_skeleton.setdefault(name_skeleton(name), name)
        if earlier != name:
            pairs.append((earlier, name))
    return pairs


def look_alike_warning(path: Path, earlier: str, later: str) -> str:
    """The warning for two users whose names are easily taken for one another."""
    # ascii(): Cyrillic "а" shows as \u0430, the difference the reader must see.
    return str(
        ConfigError(
            str(path),
            f"user {ascii(later)}",
            f"looks like user {ascii(earlier)} (the same after case folding, NFKC normalisation "
            "and replacing Cyrillic and Greek look-alike letters): rename one of them",
        )
    )


def _parse_user(path: Path, name: Any, entry: Any, groups: Mapping[str, Group]) -> User:
    where = f"user {shown_name(name) if isinstance(name, str) else repr(name)}"
    problem = user_name_problem(name)
    if problem is not None:
        raise _fail(path, where, f"the name {problem} ({USER_NAME_RULE})")
    if not isinstance(entry, dict):
        raise _fail(path, where, "must be an object with pass_hash and repositories")
    unknown = set(entry) - _USER_KEYS
    if unknown:
        raise _fail(
            path,
            where,
            f"unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(_USER_KEYS))})",
        )
    pass_hash = entry.get("pass_hash")
    if not isinstance(pass_hash, str) or not _BCRYPT_HASH.fullmatch(pass_hash):
        raise _fail(path, f"{where}: pass_hash", "is not a bcrypt hash ($2a$, $2b$ or $2y$)")
    if not 4 <= bcrypt_cost(pass_hash.encode()) <= 31:
        raise _fail(path, f"{where}: pass_hash", "has a bcrypt cost outside 4..31")
    grants = parse_grants(path, where, entry.get("repositories", {}))
    catalog = entry.get("catalog", False)
    if not isinstance(catalog, bool):
        raise _fail(path, f"{where}: catalog", "must be true or false")
    refresh_tokens = entry.get("refresh_tokens", True)
    if not isinstance(refresh_tokens, bool):
        raise _fail(path, f"{where}: refresh_tokens", "must be true or false")
    member_of = _member_of(path, where, entry.get("groups", []), groups)
    return User(
        name, pass_hash.encode("ascii"), grants, catalog, member_of, refresh_tokens=refresh_tokens
    )


def parse_users(
    path: Path,
    document: Any,
    target_cost: int | None = None,
    groups: Mapping[str, Group] | None = None,
    name_key: bytes | None = None,
) -> UserDirectory:
    """Validate a decoded ``users.json``; raise :class:`ConfigError` naming the user and key.

    ``groups`` are those of ``groups.json``, which users may name; ``target_cost`` and
    ``name_key`` are :class:`UserDirectory`'s.
    """
    if not isinstance(document, dict):
        raise ConfigError(str(path), None, "must be a JSON object of user name: settings")
    known = groups or {}
    users = {name: _parse_user(path, name, entry, known) for name, entry in document.items()}
    return UserDirectory(users, target_cost, name_key=name_key)


def load_users(
    path: Path,
    target_cost: int | None = None,
    groups: Mapping[str, Group] | None = None,
    name_key: bytes | None = None,
) -> UserDirectory:
    """Read and validate ``users.json``, whose users may name ``groups``; log a warning for
    each pair of names easily taken for one another."""
    directory = parse_users(path, read_json(path), target_cost, groups, name_key)
    for earlier, later in look_alike_names(directory.users):
        log.warning("%s", look_alike_warning(path, earlier, later))
    return directory
