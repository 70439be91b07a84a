"""What is measured: the configurations (one config directory and stack each) and the scenarios
(one request shape each) run against them."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

SERVICE = "bench-registry"
ISSUER = "bench-issuer"
USER = "bench"
PASSWORD = "bench-password"  # noqa: S105 (a benchmark user in a temporary directory)
BCRYPT_COST = 10
PUBLIC_SCOPE = "repository:public/app:pull"
USER_SCOPE = "repository:bench/app:pull,push"
TEN_SCOPES = tuple(f"repository:bench/app{i}:pull,push" for i in range(10))
FLOOD_CONNECTIONS = 64


@dataclass(frozen=True)
class Configuration:
    """One config directory, and one stack serving it."""

    name: str
    users: int = 10  # the measured user and ordinary others
    group_patterns: int = 0  # repository patterns in groups the measured user belongs to
    env: Mapping[str, str] = field(default_factory=dict)  # AUTH_SERVICE_* for this stack
    ceiling: bool = False  # serve benchmarks/ceiling.py instead of the service
    auth_mode: str = "token"  # nginx's AUTH_MODE: "proxy" for proxy mode (benchmarks/proxy.py)


@dataclass(frozen=True)
class Scenario:
    """One kind of request, measured at each connection count (or only at ``connections``)."""

    name: str
    configuration: Configuration
    meaning: str
    scopes: tuple[str, ...]
    authenticated: bool
    flood: bool = False  # measured while logins.lua sends wrong passwords
    connections: tuple[int, ...] | None = None
    # Log in as the ordinary users in turn (logins.lua), not always as the measured one.
    rotate_users: bool = False

    @property
    def query(self) -> str:
        return urlencode([("service", SERVICE), *(("scope", scope) for scope in self.scopes)])

    @property
    def headers(self) -> list[str]:
        if not self.authenticated or self.rotate_users:
            return []
        return [authorization(USER, PASSWORD)]

    @property
    def logins(self) -> tuple[str, int, str] | None:
        """logins.lua's arguments: user name format, how many users, password."""
        if not self.rotate_users:
            return None
        return ("user%06d", self.configuration.users - 1, PASSWORD)


def authorization(user: str, password: str) -> str:
    """An ``Authorization: Basic`` header line, as wrk's ``-H`` takes it."""
    return "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


CEILING = Configuration("ceiling", ceiling=True)
BASE = Configuration("base")
USERS_100K = Configuration("users-100k", users=100_000)
PATTERNS_1000 = Configuration("patterns-1000", group_patterns=1000)
COLD = Configuration("cold", users=1000, env={"AUTH_SERVICE_CREDENTIAL_CACHE_SECONDS": "0"})
# The login-crowd rows (benchmarks/crowd.py). Enough users that every round's first logins are
# of users never logged in before, whatever --repeat is (crowd.FreshUsers says when not).
CROWD = Configuration("crowd", users=6000)
# A flood of wrong passwords the address bucket does not stop (it would turn them into cheap
# 429s after its burst): what the bcrypt turns and the threads left free must withstand, as
# from more addresses than the bucket's burst can tell apart. Its wrong passwords would also
# throttle the address of the other rows' logins.
FLOODED = Configuration(
    "flooded", users=3000, env={"AUTH_SERVICE_LOGIN_THROTTLE_ADDRESS_BURST": "0"}
)

# In the order they run; scenarios of one configuration share its stack.
SCENARIOS = (
    Scenario("ceiling", CEILING, "minimal Flask app, preloaded token", (PUBLIC_SCOPE,), False),
    Scenario("anonymous", BASE, "no credentials, public repository", (PUBLIC_SCOPE,), False),
    Scenario("cached", BASE, "Basic auth, warm cache, 1 scope, 10 users", (USER_SCOPE,), True),
    Scenario("scopes-10", BASE, "as cached, 10 scopes per request", TEN_SCOPES, True),
    Scenario(
        "flood",
        FLOODED,
        f"as cached, while {FLOOD_CONNECTIONS} more connections send wrong passwords",
        (USER_SCOPE,),
        True,
        flood=True,
        connections=(16,),
    ),
    Scenario("users-100k", USERS_100K, "as cached, 100,000 users", (USER_SCOPE,), True),
    Scenario(
        "patterns-1000",
        PATTERNS_1000,
        "as cached, user in 10 groups of 100 patterns",
        (USER_SCOPE,),
        True,
    ),
    Scenario(
        "cold",
        COLD,
        f"cache off, bcrypt cost {BCRYPT_COST}, 999 users in turn",
        (PUBLIC_SCOPE,),
        True,
        rotate_users=True,
    ),
)


def users_document(count: int, pass_hash: str, groups: list[str]) -> dict[str, Any]:
    """``count`` users: the measured one (allowed on ``bench/*``) and ordinary others, all with
    the same hash, so 100,000 users cost one bcrypt hash to make."""
    users: dict[str, Any] = {
        USER: {"pass_hash": pass_hash, "repositories": {"bench/*": ["pull", "push"]}}
    }
    if groups:
        users[USER]["groups"] = groups
    for i in range(1, count):
        users[f"user{i:06d}"] = {
            "pass_hash": pass_hash,
            "repositories": {f"team{i % 100}/app": ["pull", "push"], "*": ["pull"]},
        }
    return users


def groups_document(patterns: int, per_group: int = 100) -> dict[str, Any]:
    """Groups holding ``patterns`` repository patterns in all, ``per_group`` each; none of them
    matches ``bench/*``, so the measured user's own key still decides."""
    groups: dict[str, Any] = {}
    for i in range(patterns):
        name = f"group{i // per_group:02d}"
        groups.setdefault(name, {"repositories": {}})["repositories"][f"ns{i:04d}/*"] = ["pull"]
    return groups


def write_config(directory: Path, configuration: Configuration, pass_hash: str) -> Path:
    """A complete config directory for ``configuration``: key, certificate and the JSON files."""
    from auth_service.tokens.signer import generate_signing_pair

    directory.mkdir(parents=True, exist_ok=True)
    key_pem, cert_pem = generate_signing_pair(ISSUER, days=2)
    (directory / "token.key").write_bytes(key_pem)
    (directory / "token.crt").write_bytes(cert_pem)
    (directory / "config.py").write_text(
        f"ISSUER = {ISSUER!r}\nKEY_PATH = 'token.key'\nCERT_PATH = 'token.crt'\n"
        f"SERVICE = {SERVICE!r}\n"
    )
    groups = groups_document(configuration.group_patterns)
    if groups:
        (directory / "groups.json").write_text(json.dumps(groups))
    users = users_document(configuration.users, pass_hash, sorted(groups))
    (directory / "users.json").write_text(json.dumps(users))
    public = {"blacklist": False, "repositories": ["public/*"]}
    (directory / "repositories.json").write_text(json.dumps(public))
    return directory
