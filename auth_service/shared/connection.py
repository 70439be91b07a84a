"""The connection to Redis: one client per process, short timeouts, no retries, and a breaker.

The client is made on first use in each process (:class:`auth_service.forked.PerProcess`), not
inherited: uWSGI builds the app in its master and forks the workers, and a connection pool
shared across a fork would mix two processes' replies on one socket. (redis-py's own pool
notices a fork too, but may wait five seconds for a lock a parent's thread held: a fresh client
has nothing to wait for.)

Every connect and every answer waits at most ``REDIS_TIMEOUT_SECONDS``, and a failed command is
not retried (redis-py's default retries three times with backoff: four timeouts). The request
path goes through :meth:`RedisConnection.run`, which the :class:`.breaker.Breaker` short-cuts
for a second after a failure; the command line uses :meth:`RedisConnection.call`, which tries
once and reports, since a command must fail loudly rather than fall back.

``redis`` is imported here, and only when a connection is made: without ``REDIS_URL`` it is
never loaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from auth_service.forked import PerProcess
from auth_service.records import metrics
from auth_service.shared.breaker import Breaker

if TYPE_CHECKING:
    import redis

T = TypeVar("T")

# Connections one process may hold: uWSGI's threads per worker (128), each using one at a time,
# with room to spare. redis-py's default of 100 would fail requests under load, not Redis.
MAX_CONNECTIONS = 256


class RedisUnavailable(Exception):
    """Redis did not answer (or the breaker says not to try); the message names no secret."""


def shown_url(url: str) -> str:
    """``url`` without its password (in the user part, or a ``password=`` query parameter)."""
    parts = urlsplit(url)
    shown = url
    if parts.password is not None:
        user = parts.username or ""
        netloc = f"{user}:***@{parts.netloc.rpartition('@')[2]}"
        shown = urlunsplit(parts._replace(netloc=netloc))
    if "password" in dict(parse_qsl(parts.query)):
        pairs = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)]
        shown = urlunsplit(urlsplit(shown)._replace(query=urlencode(pairs, safe="*/")))
    # urlunsplit drops the empty host of unix:///path: put it back.
    if parts.scheme == "unix" and not parts.netloc and not shown.startswith("unix://"):
        shown = "unix://" + shown.removeprefix("unix:")
    return shown


class LuaScript:
    """A Lua script run by its SHA1 (``EVALSHA``), loaded first where Redis doesn't know it
    (a restarted Redis, a new one): ``register_script``'s behaviour, for any process's client."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 (Redis's name for it)

    def __call__(self, client: redis.Redis, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run the script on ``client`` with ``keys`` and ``args``; its reply."""
        from redis.exceptions import NoScriptError

        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)


class RedisConnection:
    """Redis at ``url``, as each process of this instance reaches it."""

    def __init__(self, url: str, timeout: float, retry_seconds: float | None = None) -> None:
        self.url = url
        self.shown_url = shown_url(url)
        self.timeout = timeout
        parts = urlsplit(url)
        passwords = (parts.password, dict(parse_qsl(parts.query)).get("password"))
        # As written in the URL and as sent (percent-decoded), for _safe to mask.
        self._passwords = {p for given in passwords if given for p in (given, unquote(given))}
        self._clients = PerProcess(self._make_client)
        breaker_options = {} if retry_seconds is None else {"retry_seconds": retry_seconds}
        escaped = self.shown_url.replace("%", "%%")  # a logging format: %s is the reason
        self.breaker = Breaker(
            f"Redis at {escaped} is unreachable (%s): login throttling falls back to "
            "this instance's own buckets and refresh grants to the last revocations this "
            "process saw, until it answers again; logged once",
            f"Redis at {self.shown_url} answers again: throttling and revocations are shared",
            on_change=metrics.set_redis_up,
            **breaker_options,
        )

    def _pool(self) -> redis.ConnectionPool:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        pool = redis.ConnectionPool.from_url(self.url, max_connections=MAX_CONNECTIONS)
        # After from_url, whose URL options would win over its arguments: a ?socket_timeout=
        # in REDIS_URL must not make requests wait longer than REDIS_TIMEOUT_SECONDS.
        pool.connection_kwargs.update(
            socket_connect_timeout=self.timeout,
            socket_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),
        )
        return pool

    def _make_client(self) -> redis.Redis:
        import redis

        return redis.Redis(connection_pool=self._pool())

    def client(self) -> redis.Redis:
        """This process's client."""
        return self._clients.get()

    def _safe(self, text: str) -> str:
        """``text`` with the password, should a message of redis-py's hold it, masked."""
        for password in self._passwords:
            text = text.replace(password, "***")
        return text

    def _reason(self, exc: Exception) -> str:
        return self._safe(f"{type(exc).__name__}: {exc}")

    def call(self, operation: Callable[[redis.Redis], T]) -> T:
        """``operation(client)``, tried once whatever the breaker says: for the command line.
        Raises :class:`RedisUnavailable` with the reason."""
        from redis.exceptions import RedisError

        try:
            return operation(self.client())
        except RedisError as exc:
            raise RedisUnavailable(f"Redis at {self.shown_url}: {self._reason(exc)}") from None

    def run(self, operation: Callable[[redis.Redis], T]) -> T:
        """``operation(client)``, unless the breaker is open; raises :class:`RedisUnavailable`
        at once when it is, or when Redis fails (opening it)."""
        from redis.exceptions import RedisError

        if not self.breaker.allow():
            raise RedisUnavailable(f"Redis at {self.shown_url}: not tried (it failed just now)")
        try:
            result = operation(self.client())
        except RedisError as exc:
            reason = self._reason(exc)
            self.breaker.failed(reason)
            raise RedisUnavailable(f"Redis at {self.shown_url}: {reason}") from None
        self.breaker.succeeded()
        return result

    def reachable(self) -> bool:
        """Whether Redis answers a PING now (not tried while the breaker is open), recorded in
        the ``auth_redis_up`` gauge: for ``/health`` and ``/metrics``."""
        try:
            self.run(lambda client: client.ping())
        except RedisUnavailable:
            up = False
        else:
            up = True
        metrics.set_redis_up(up)
        return up
