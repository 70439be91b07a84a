"""``config check``: every problem of a config directory at once, one line each.

It loads each file with the service's own loaders, but goes on after a broken file (and after a
broken user) so that one run lists everything to fix. Warnings the loaders log (an expiring
certificate, the old ``backlist`` spelling, no ``SERVICE``) are reported as warnings.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from auth_service.errors import ConfigError
from auth_service.files.anonymous import load_repositories
from auth_service.files.groups import Group, load_groups
from auth_service.files.jsonfile import read_json
from auth_service.files.revocations import load_revocations
from auth_service.files.settings import (
    CONFIG_FILE,
    GROUPS_FILE,
    REPOSITORIES_FILE,
    REVOCATIONS_FILE,
    USERS_FILE,
    X5C_HEADER,
    Settings,
    load_settings,
)
from auth_service.files.users import (
    VALIDATION_ONLY_COST,
    User,
    bcrypt_cost,
    look_alike_names,
    look_alike_warning,
    parse_users,
    rehash_target,
)
from auth_service.tokens.signer import algorithm_for, load_certificate, load_private_key

WEAK_COST = 10  # below: a stolen users.json gives passwords up quickly
SLOW_COST = 14  # above: each login costs a second or more of CPU

T = TypeVar("T")


@dataclass(frozen=True)
class Finding:
    """One line of the report: a problem (the service would refuse it) or a warning."""

    message: str
    problem: bool = True

    def __str__(self) -> str:
        return self.message if self.problem else f"warning: {self.message}"


class _Collect(logging.Handler):
    def __init__(self, findings: list[Finding]) -> None:
        super().__init__(logging.WARNING)
        self.findings = findings

    def emit(self, record: logging.LogRecord) -> None:
        self.findings.append(Finding(record.getMessage(), problem=record.levelno >= logging.ERROR))


@contextmanager
def _loader_warnings(findings: list[Finding]) -> Iterator[None]:
    """Report what the loaders log as findings instead of letting it reach the log."""
    logger = logging.getLogger("auth_service")
    handler, propagate = _Collect(findings), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def check_config(config_dir: Path, now: dt.datetime | None = None) -> list[Finding]:
    """Every problem and warning of the configuration in ``config_dir``."""
    now = now or dt.datetime.now(dt.UTC)
    findings: list[Finding] = []

    def attempt(load: Callable[[], T]) -> T | None:
        try:
            return load()
        except ConfigError as exc:
            findings.append(Finding(str(exc)))
            return None

    with _loader_warnings(findings):
        settings = attempt(lambda: load_settings(config_dir))
        if settings is not None:
            _check_settings(settings, findings, now)
        groups = attempt(lambda: load_groups(config_dir / GROUPS_FILE))
        if groups is None:  # reported; still check users against the group names it has
            groups = _group_names(config_dir / GROUPS_FILE)
        users = _check_users(config_dir / USERS_FILE, groups, findings)
        _check_costs(config_dir, settings, users, findings)
        for earlier, later in look_alike_names(user.name for user in users):
            findings.append(
                Finding(look_alike_warning(config_dir / USERS_FILE, earlier, later), False)
            )
        attempt(lambda: load_repositories(config_dir / REPOSITORIES_FILE))
        attempt(lambda: load_revocations(config_dir / REVOCATIONS_FILE))
    for name in (USERS_FILE, REVOCATIONS_FILE):
        _check_not_world_readable(
            config_dir / name, None, "chmod 600, or 640 if a group must read it", findings
        )
    return findings


def _check_not_world_readable(
    path: Path, setting: str | None, advice: str, findings: list[Finding]
) -> None:
    """A warning if every local user may read ``path`` (password hashes, revocations, the key),
    naming the ``setting`` that names it, if any."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return  # missing or unreadable: the loaders say so where it matters
    if mode & 0o004:
        problem = f"readable by every user (mode {mode:04o}); {advice}"
        findings.append(Finding(str(ConfigError(str(path), setting, problem)), problem=False))


def _check_settings(settings: Settings, findings: list[Finding], now: dt.datetime) -> None:
    config_py = str(settings.config_dir / CONFIG_FILE)
    try:
        key = load_private_key(settings.key_path)
        algorithm_for(key, str(settings.key_path))
        if settings.cert_path is not None:
            load_certificate(settings.cert_path, key, now)
    except ConfigError as exc:
        findings.append(Finding(str(exc)))
    if settings.cert_path is None and settings.token_header == X5C_HEADER:
        findings.append(
            Finding(
                f"{config_py}: CERT_PATH: not set: tokens carry no x5c header, which registry 3 "
                "needs unless it is given a jwks file (auth-service keys jwks)",
                problem=False,
            )
        )
    _check_not_world_readable(settings.key_path, "KEY_PATH", "chmod 600", findings)
    if settings.redis_url:
        _check_redis(settings, findings)


def _check_redis(settings: Settings, findings: list[Finding]) -> None:
    """A warning if Redis doesn't answer a PING: the service starts anyway, and falls back."""
    from auth_service.shared.connection import RedisConnection, RedisUnavailable

    try:
        RedisConnection(settings.redis_url, settings.redis_timeout).call(lambda c: c.ping())
    except RedisUnavailable as exc:
        findings.append(
            Finding(
                f"REDIS_URL: {exc}: the service would start, with each instance on its own "
                "throttle buckets and its last revocations seen, until Redis answers",
                problem=False,
            )
        )


def _group_names(path: Path) -> Mapping[str, Group]:
    """Empty groups named like those of a broken ``groups.json``, to check membership with."""
    try:
        document = read_json(path)
    except ConfigError:
        return {}
    names = document if isinstance(document, dict) else {}
    return {name: Group(name, {}) for name in names if isinstance(name, str)}


def _check_users(path: Path, groups: Mapping[str, Group], findings: list[Finding]) -> list[User]:
    """The valid users of ``users.json``; each broken one is a finding."""
    try:
        document: Any = read_json(path)
        if not isinstance(document, dict):
            parse_users(path, document)  # raises the service's own error
    except ConfigError as exc:
        findings.append(Finding(str(exc)))
        return []
    users = []
    for name, entry in document.items():
        try:
            directory = parse_users(path, {name: entry}, VALIDATION_ONLY_COST, groups)
        except ConfigError as exc:
            findings.append(Finding(str(exc)))
            continue
        users.extend(directory.users.values())
    return users


def _cost_finding(source: str, key: str, cost: int) -> Finding | None:
    if cost < WEAK_COST:
        problem = f"bcrypt cost {cost} is weak (use {WEAK_COST} or more)"
        return Finding(str(ConfigError(source, key, problem)))
    if cost > SLOW_COST:
        warning = f"bcrypt cost {cost} makes every login slow (at most {SLOW_COST} advised)"
        return Finding(str(ConfigError(source, key, warning)), problem=False)
    return None


def _check_costs(
    config_dir: Path, settings: Settings | None, users: list[User], findings: list[Finding]
) -> None:
    costs = Counter()
    for user in users:
        cost = bcrypt_cost(user.pass_hash)
        costs[cost] += 1
        finding = _cost_finding(
            str(config_dir / USERS_FILE), f"user {user.name!r}: pass_hash", cost
        )
        if finding:
            findings.append(finding)
    target = None if settings is None else settings.bcrypt_cost
    if len(costs) > 1:
        findings.append(_mixed_costs_finding(config_dir / USERS_FILE, costs, target))
    if target is None:
        return
    config_py = str(config_dir / CONFIG_FILE)
    finding = _cost_finding(config_py, "BCRYPT_COST", target)
    if finding:
        findings.append(finding)
    if len(costs) == 1 and target not in costs:
        findings.append(
            Finding(
                f"{config_py}: BCRYPT_COST: {target} differs from the cost of the hashes "
                f"({next(iter(costs))}): each is rehashed to {target} at its user's next login",
                problem=False,
            )
        )


def _mixed_costs_finding(users_json: Path, costs: Counter[int], configured: int | None) -> Finding:
    """One line for a users.json whose hashes have several costs: which, how many, and the cost
    each is rehashed to at its user's next login (``BCRYPT_COST``, else the most common)."""
    why = "BCRYPT_COST" if configured else "the most common, as BCRYPT_COST is not set"
    target = rehash_target(costs, configured)
    counts = ", ".join(f"{costs[cost]} at cost {cost}" for cost in sorted(costs))
    return Finding(
        f"{users_json}: bcrypt costs are mixed ({counts}): hashes are rehashed to cost {target} "
        f"({why}) as their users log in",
        problem=False,
    )
