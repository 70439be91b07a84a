"""Settings: ``config.py`` (Python, read as Flask reads a config file) plus
``AUTH_SERVICE_<NAME>`` overrides.

The result is one validated, typed, immutable :class:`Settings`. Names from the service this one
grew from (``ISSUER``, ``KEY_PATH``, ``AUDIENCE``, ``PORT``) keep working; the last two are
accepted and ignored.
"""

from __future__ import annotations

import logging
import os
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from auth_service.errors import ConfigError

log = logging.getLogger(__name__)

CONFIG_DIR_ENV = "AUTH_SERVICE_CONFIG_DIR"
ENV_PREFIX = "AUTH_SERVICE_"
DEFAULT_CONFIG_DIR = "config"
CONFIG_FILE = "config.py"
USERS_FILE = "users.json"
REPOSITORIES_FILE = "repositories.json"
REVOCATIONS_FILE = "revocations.json"
GROUPS_FILE = "groups.json"

# TOKEN_HEADER's values: which registry configuration the tokens' header is made for
# (:mod:`auth_service.tokens.signer`).
X5C_HEADER = "x5c"
JWKS_HEADER = "jwks"
TOKEN_HEADERS = (X5C_HEADER, JWKS_HEADER)

# Names the original service read that mean nothing here: the audience is the registry's
# `service` parameter, and the listening address belongs to uWSGI.
LEGACY_IGNORED = {
    "AUDIENCE": "the token audience is the requested `service` (see SERVICE)",
    "PORT": "the listening socket is set in uwsgi.ini (AUTH_SERVICE_SOCKET)",
}


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from ``config.py`` and the environment."""

    config_dir: Path
    issuer: str
    key_path: Path
    cert_path: Path | None
    services: tuple[str, ...]  # empty: any requested service is accepted
    token_lifetime: int
    refresh_token_lifetime: int  # 0: no refresh tokens
    anonymous_access: bool
    realm: str
    bcrypt_cost: int | None  # None: the cost most users' hashes have (users.rehash_target)
    credential_cache_seconds: int = 300  # 0: every login runs bcrypt
    credential_cache_size: int = 10000
    bcrypt_concurrency: int = 2  # bcrypt checks running at once, across the workers
    # Logins that may wait for a bcrypt turn in each worker; None: uWSGI's threads per worker
    # less a few kept for cheap requests (passwords.bcrypt_turns.default_queue_limit).
    bcrypt_queue: int | None = None
    bcrypt_wait_seconds: int = 10  # longest a login waits for a bcrypt turn before a 503
    login_throttle_burst: int = 10  # wrong passwords per address and user before throttling
    login_throttle_per_minute: int = 6  # bcrypt checks a throttled address and user then get
    login_throttle_address_burst: int = 200  # failed logins per address, all users; 0: off
    login_throttle_address_per_minute: int = 60  # bcrypt checks a throttled address then gets
    audit_log: str = "-"  # "-": standard error (uWSGI's log); "": off; else a file
    token_header: str = X5C_HEADER  # "jwks": kid only, for registry 3.x with a jwks file
    # "": no Redis, each instance keeps its own state. Kept out of repr: it may hold a password.
    redis_url: str = field(default="", repr=False)
    redis_timeout: float = 0.25  # seconds to connect to Redis, and to wait for each answer

    @property
    def users_path(self) -> Path:
        return self.config_dir / USERS_FILE

    @property
    def repositories_path(self) -> Path:
        return self.config_dir / REPOSITORIES_FILE

    @property
    def revocations_path(self) -> Path:
        return self.config_dir / REVOCATIONS_FILE

    @property
    def audit_log_path(self) -> Path | None:
        """The audit log file; None when it goes to standard error or is off."""
        if self.audit_log in ("", "-"):
            return None
        return _resolve(self.config_dir, self.audit_log)


# --- value parsers: each takes the raw value (from Python or a string from the environment) ---


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value


def _optional_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value.strip()


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, str):
            value = value.strip()
            if not value.lstrip("-").isdigit():
                raise ValueError(f"must be a whole number from {low} to {high}")
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return value

    return parse


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
    raise ValueError("must be true or false")


def parse_token_header(value: Any) -> str:
    """``TOKEN_HEADER``'s value, checked: ``"x5c"`` or ``"jwks"`` (any case)."""
    lowered = value.strip().lower() if isinstance(value, str) else value
    if lowered not in TOKEN_HEADERS:
        raise ValueError(
            f'must be "{X5C_HEADER}" (kid and x5c: registry 2.x, or 3.x with a rootcertbundle) '
            f'or "{JWKS_HEADER}" (kid only: registry 3.x with a jwks file), not {value!r}'
        )
    return lowered


REDIS_SCHEMES = ("redis", "rediss", "unix")


def parse_redis_url(value: Any) -> str:
    """``REDIS_URL``'s value, checked: empty (no Redis), or a ``redis://``, ``rediss://`` or
    ``unix://`` URL that names a host or a socket. The errors never repeat the value: it may
    hold a password."""
    if not isinstance(value, str):
        raise ValueError("must be a string: a redis://, rediss:// or unix:// URL, or empty")
    value = value.strip()
    if not value:
        return ""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a port that isn't a number)
    except ValueError:
        raise ValueError("is not a URL (redis://[:password@]host[:port][/db])") from None
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError(
            "must be a redis://, rediss:// or unix:// URL (redis://[:password@]host[:port][/db] "
            "or unix:///path/to/redis.sock)"
        )
    if parts.scheme == "unix" and not parts.path.startswith("/"):
        raise ValueError("a unix:// URL must name the socket's absolute path: unix:///path")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError(f"a {parts.scheme}:// URL must name a host: {parts.scheme}://host:6379")
    if parts.scheme != "unix" and not re.fullmatch(r"/?|/\d+", parts.path):
        # redis-py would quietly read "/first" as database 0, and "/0/1" as 1.
        raise ValueError(f"the path is the database number: {parts.scheme}://host:6379/0")
    # What redis-py itself refuses (a ?db= that isn't a number, an option no connection takes,
    # which it would find only when connecting, in every request): imported only when set.
    from redis import ConnectionPool, RedisError
    from redis.connection import parse_url

    try:
        parse_url(value)
        ConnectionPool.from_url(value).make_connection()  # made, not connected
    except (ValueError, TypeError, RedisError) as exc:
        message = str(exc)
        secrets = (parts.password, dict(parse_qsl(parts.query)).get("password"))
        for secret in {s for given in secrets if given for s in (given, unquote(given))}:
            message = message.replace(secret, "***")
        raise ValueError(f"redis-py refuses it: {message}") from None
    return value


def _seconds(low: float, high: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        try:
            if isinstance(value, bool):
                raise ValueError
            seconds = float(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number of seconds from {low} to {high}") from None
        if not low <= seconds <= high:
            raise ValueError(f"must be a number of seconds from {low} to {high}")
        return seconds

    return parse


def _service_names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        # From the environment: a comma-separated list; from config.py: one name.
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, list | tuple) or not value:
        raise ValueError("must be a service name or a non-empty list of them")
    names = []
    for name in value:
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ValueError(f"{name!r} is not a service name")
        names.append(name)
    return tuple(dict.fromkeys(names))


# name -> (parser, default). A default of `...` marks a required setting.
_FIELDS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "ISSUER": (_text, ...),
    "KEY_PATH": (_text, ...),
    "CERT_PATH": (_text, None),
    "SERVICE": (_service_names, ()),
    "TOKEN_LIFETIME": (_integer(60, 86400), 900),
    "REFRESH_TOKEN_LIFETIME": (_integer(0, 366 * 86400), 30 * 86400),
    "ANONYMOUS_ACCESS": (_boolean, True),
    "REALM": (_text, "Docker registry"),
    "BCRYPT_COST": (_integer(4, 31), None),
    "CREDENTIAL_CACHE_SECONDS": (_integer(0, 86400), 300),
    "CREDENTIAL_CACHE_SIZE": (_integer(1, 10_000_000), 10000),
    "BCRYPT_CONCURRENCY": (_integer(1, 64), 2),
    "BCRYPT_QUEUE": (_integer(0, 4096), None),
    "BCRYPT_WAIT_SECONDS": (_integer(0, 20), 10),
    "LOGIN_THROTTLE_BURST": (_integer(0, 1_000_000), 10),
    "LOGIN_THROTTLE_PER_MINUTE": (_integer(1, 60_000), 6),
    "LOGIN_THROTTLE_ADDRESS_BURST": (_integer(0, 1_000_000), 200),
    "LOGIN_THROTTLE_ADDRESS_PER_MINUTE": (_integer(1, 60_000), 60),
    "AUDIT_LOG": (_optional_text, "-"),
    "TOKEN_HEADER": (parse_token_header, X5C_HEADER),
    "REDIS_URL": (parse_redis_url, ""),
    "REDIS_TIMEOUT_SECONDS": (_seconds(0.01, 10.0), 0.25),
}


def config_dir_from_env(environ: Mapping[str, str] | None = None) -> Path:
    """The configuration directory: ``$AUTH_SERVICE_CONFIG_DIR`` or ``config``."""
    environ = os.environ if environ is None else environ
    return Path(environ.get(CONFIG_DIR_ENV) or DEFAULT_CONFIG_DIR)


def _read_config_file(path: Path) -> dict[str, Any]:
    """The upper-case names ``config.py`` defines, read as Flask's ``Config.from_pyfile`` reads
    them: the file runs as a module named ``config``, with ``__file__`` set to its path."""
    if not path.is_file():
        raise ConfigError(str(path), None, "file not found")
    module = types.ModuleType("config")
    module.__file__ = str(path)
    try:
        exec(compile(path.read_bytes(), str(path), "exec"), module.__dict__)  # noqa: S102
    except Exception as exc:  # any error in the operator's Python is a configuration error
        raise ConfigError(str(path), None, f"cannot be loaded: {exc}") from None
    return {name: getattr(module, name) for name in dir(module) if name.isupper()}


def _resolve(config_dir: Path, value: str) -> Path:
    """Relative paths are taken from the configuration directory, wherever the service runs."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else config_dir / path


def load_settings(
    config_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read ``config.py`` from the config directory, apply environment and explicit overrides.

    Precedence, lowest first: defaults, ``config.py``, ``AUTH_SERVICE_<NAME>``, ``overrides``.
    Raises :class:`ConfigError` naming the file or variable and the key.
    """
    environ = os.environ if environ is None else environ
    config_dir = config_dir_from_env(environ) if config_dir is None else Path(config_dir)
    config_path = config_dir / CONFIG_FILE
    from_file = _read_config_file(config_path)

    for name, why in LEGACY_IGNORED.items():
        if name in from_file:
            log.info("%s: %s is ignored: %s", config_path, name, why)

    values: dict[str, Any] = {}
    for name, (parse, default) in _FIELDS.items():
        env_name = ENV_PREFIX + name
        # (where the value came from, the key to name in an error, the raw value)
        if overrides and name in overrides:
            source, key, raw = "test configuration", name, overrides[name]
        elif env_name in environ:
            source, key, raw = f"environment {env_name}", None, environ[env_name]
        elif name in from_file:
            source, key, raw = str(config_path), name, from_file[name]
        elif default is ...:
            raise ConfigError(str(config_path), name, "is required")
        else:
            values[name] = default
            continue
        try:
            values[name] = parse(raw)
        except ValueError as exc:
            raise ConfigError(source, key, str(exc)) from None

    services = values["SERVICE"]
    if not services:
        log.warning(
            "%s: SERVICE is not set: tokens will be issued for any requested service; "
            "set it to the registry's auth.token.service",
            config_path,
        )
    cert = values["CERT_PATH"]
    return Settings(
        config_dir=config_dir,
        issuer=values["ISSUER"],
        key_path=_resolve(config_dir, values["KEY_PATH"]),
        cert_path=_resolve(config_dir, cert) if cert else None,
        services=services,
        token_lifetime=values["TOKEN_LIFETIME"],
        refresh_token_lifetime=values["REFRESH_TOKEN_LIFETIME"],
        anonymous_access=values["ANONYMOUS_ACCESS"],
        realm=values["REALM"],
        bcrypt_cost=values["BCRYPT_COST"],
        credential_cache_seconds=values["CREDENTIAL_CACHE_SECONDS"],
        credential_cache_size=values["CREDENTIAL_CACHE_SIZE"],
        bcrypt_concurrency=values["BCRYPT_CONCURRENCY"],
        bcrypt_queue=values["BCRYPT_QUEUE"],
        bcrypt_wait_seconds=values["BCRYPT_WAIT_SECONDS"],
        login_throttle_burst=values["LOGIN_THROTTLE_BURST"],
        login_throttle_per_minute=values["LOGIN_THROTTLE_PER_MINUTE"],
        login_throttle_address_burst=values["LOGIN_THROTTLE_ADDRESS_BURST"],
        login_throttle_address_per_minute=values["LOGIN_THROTTLE_ADDRESS_PER_MINUTE"],
        audit_log=values["AUDIT_LOG"],
        token_header=values["TOKEN_HEADER"],
        redis_url=values["REDIS_URL"],
        redis_timeout=values["REDIS_TIMEOUT_SECONDS"],
    )
