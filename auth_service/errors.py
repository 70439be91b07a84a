"""Every way the service refuses a request, defined once; and the one configuration error.

:data:`REFUSALS` is the table: for each refusal, what the client gets (status, the registry's
error code, the message, ``Retry-After``, the Basic challenge) and how it is counted (its outcome
in the metrics, in the audit log). The token endpoint and proxy mode's decision endpoint answer
from it, the metrics take their outcome labels from it and the audit log its outcomes. Code that
refuses a request raises a :class:`Refused` subclass, which names its row.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import ClassVar


class RetryAfter(enum.Enum):
    """What a refusal's ``Retry-After`` header says."""

    NOT_SENT = "not sent"
    # A moment: what caused it (logins queued for bcrypt, a log that takes no line) passes within
    # seconds, so a client that retries should not wait long.
    ONE_SECOND = "1"
    # The seconds the refusing code worked out (:attr:`Refused.retry_after`).
    THE_EXCEPTIONS = "the exception's retry_after"


@dataclass(frozen=True)
class Refusal:
    """One row of the table: one way a request is refused."""

    name: str
    status: int
    # The registry's error code (distribution's errcode), which clients show or act on.
    code: str
    # What the client reads; "{reason}" stands for the exception's own text.
    message: str
    # The ``outcome`` label of ``auth_token_requests_total``; None: not counted.
    metric_outcome: str | None
    # The ``outcome`` of the audit line; None: no audit line.
    audit_outcome: str | None
    retry_after: RetryAfter = RetryAfter.NOT_SENT
    # A ``WWW-Authenticate: Basic`` challenge, which makes clients ask for a password.
    challenge: bool = False

    def message_for(self, reason: str) -> str:
        """The message the client reads, with ``reason`` where the row shows the reason."""
        return self.message.replace("{reason}", reason)


# The outcome of a request that got its token, beside the refusals' own (metrics and audit).
ISSUED = "issued"

BAD_REQUEST = Refusal(
    "bad_request", 400, "INVALID_REQUEST", "{reason}", "bad_request", "bad_request"
)
BAD_CREDENTIALS = Refusal(
    "bad_credentials",
    401,
    "UNAUTHORIZED",
    "{reason}",
    "bad_credentials",
    "bad_credentials",
    challenge=True,
)
THROTTLED = Refusal(
    "throttled",
    429,
    "TOOMANYREQUESTS",
    "{reason}",
    "throttled",
    "throttled",
    retry_after=RetryAfter.THE_EXCEPTIONS,
)
OVERLOADED = Refusal(
    "overloaded",
    503,
    "UNAVAILABLE",
    "{reason}: try again shortly",
    "overloaded",
    "overloaded",
    retry_after=RetryAfter.ONE_SECOND,
)
# Decided, but not recorded: no token leaves unaudited. Counted as overloaded, as the log may be
# exactly what is stuck; its own audit line is what could not be written.
AUDIT_UNAVAILABLE = Refusal(
    "audit_unavailable",
    503,
    "UNAVAILABLE",
    "{reason}: try again shortly",
    "overloaded",
    None,
    retry_after=RetryAfter.ONE_SECOND,
)
# A token request whose body is longer than any real one: refused before it is read.
BODY_TOO_LARGE = Refusal(
    "body_too_large",
    413,
    "SIZE_INVALID",
    "The data value transmitted exceeds the capacity limit.",
    "bad_request",
    "bad_request",
)
# Not a token request at all (PUT /v2/token, POST /metrics): neither counted nor audited.
# Proxy mode (auth_service.proxy): a request without credentials that needs them, e.g. the
# `GET /v2/` every client starts with, or a pull the anonymous rule does not allow. Not a failed
# login: counted and recorded apart from bad_credentials.
AUTHENTICATION_REQUIRED = Refusal(
    "authentication_required",
    401,
    "UNAUTHORIZED",
    "authentication required",
    "challenged",
    "challenged",
    challenge=True,
)
# Proxy mode: the user is known, but the request needs access they don't have. The message is
# the registry's own for DENIED; the audit line's reason names what was missing.
DENIED = Refusal(
    "denied", 403, "DENIED", "requested access to the resource is denied", "denied", "denied"
)
METHOD_NOT_ALLOWED = Refusal("method_not_allowed", 405, "UNSUPPORTED", "{reason}", None, None)
NOT_FOUND = Refusal("not_found", 404, "NOT_FOUND", "{reason}", None, None)
# A bug: logged with its traceback, and never described to the client.
INTERNAL_ERROR = Refusal("internal_error", 500, "INTERNAL_ERROR", "internal error", None, None)

REFUSALS = (
    BAD_REQUEST,
    BAD_CREDENTIALS,
    THROTTLED,
    OVERLOADED,
    AUDIT_UNAVAILABLE,
    BODY_TOO_LARGE,
    AUTHENTICATION_REQUIRED,
    DENIED,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    INTERNAL_ERROR,
)

# Each status has one registry error code, so an HTTP error raised by Flask or Werkzeug (a 404
# for an unknown path, a 405 on /metrics) is answered with the code the table gives its status.
ERROR_CODE_BY_STATUS = {refusal.status: refusal.code for refusal in REFUSALS}
# The registry's code for an error it has no other code for.
UNKNOWN_ERROR_CODE = "UNKNOWN"


class Refused(Exception):
    """A refused request; each subclass names its row of :data:`REFUSALS`.

    ``str()`` is the reason, which the audit line records and the client's message may show.
    """

    refusal: ClassVar[Refusal]
    # The Retry-After seconds of a row that sends the exception's own.
    retry_after: int = 1
    # Headers this refusal adds to the row's, e.g. a 405's ``Allow``.
    headers: tuple[tuple[str, str], ...] = ()

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(self.refusal.message if reason is None else reason)

    def client_message(self) -> str:
        """The message the client reads."""
        return self.refusal.message_for(str(self))


class BadRequest(Refused):
    """The request is malformed (a broken scope, an unknown service, an unreadable body)."""

    refusal = BAD_REQUEST


class Unauthorized(Refused):
    """Authentication failed or is required: answered with a Basic challenge, never a token."""

    refusal = BAD_CREDENTIALS


class Throttled(Refused):
    """Too many failed logins from this address (for this user, or for all): retry after
    ``retry_after`` seconds."""

    refusal = THROTTLED

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many failed logins: try again later")
        self.retry_after = max(1, math.ceil(retry_after))


class Overloaded(Refused):
    """A login could not start its bcrypt check in time, or too many already wait for one."""

    refusal = OVERLOADED


class AuthenticationRequired(Refused):
    """Proxy mode: no credentials, and the request needs some."""

    refusal = AUTHENTICATION_REQUIRED


class Denied(Refused):
    """Proxy mode: the user may not do what the request does; the reason names what is missing."""

    refusal = DENIED


class AuditUnavailable(Refused):
    """The audit log has taken no line in time: refuse, don't issue unrecorded."""

    refusal = AUDIT_UNAVAILABLE


class BodyTooLarge(Refused):
    """A POST body longer than a token request's limit."""

    refusal = BODY_TOO_LARGE


class MethodNotAllowed(Refused):
    """A method the path does not take; ``allowed`` is what the ``Allow`` header lists."""

    refusal = METHOD_NOT_ALLOWED

    def __init__(self, method: str, allowed: str) -> None:
        super().__init__(f"{method} is not allowed here")
        self.headers = (("Allow", allowed),)


class ConfigError(Exception):
    """A configuration file or setting is unusable.

    ``str()`` is a single line that names the file (or environment variable) and the key, so an
    operator can fix it without reading a traceback.
    """

    def __init__(self, source: str, key: str | None, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")
