"""The Authorization header, parsed from its raw bytes.

Werkzeug's own parser hides bad input (a non-UTF-8 Basic header reads as "no credentials"), which
would turn a failed login into an anonymous token; here every header that is present but not
well-formed Basic is reported as invalid.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass


class Secret(str):
    """A password: behaves as a string, but never prints its value in a log or traceback."""

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def reveal(self) -> str:
        """The actual value, for the one place that checks it."""
        return str.__str__(self)


@dataclass(frozen=True)
class Anonymous:
    """No Authorization header at all."""


@dataclass(frozen=True)
class BasicCredentials:
    """A well-formed ``Basic`` user and password."""

    username: str
    password: Secret


@dataclass(frozen=True)
class InvalidCredentials:
    """A header that was sent but cannot be used; ``reason`` is safe to show the client."""

    reason: str


Credentials = Anonymous | BasicCredentials | InvalidCredentials


def parse_authorization(header: str | None) -> Credentials:
    """Classify the raw ``Authorization`` value (a WSGI latin-1 string, or None if absent)."""
    if header is None:
        return Anonymous()
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return InvalidCredentials("only Basic authentication is accepted here")
    try:
        raw = base64.b64decode(token.strip().encode("latin-1"), validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        return InvalidCredentials("malformed Basic credentials")
    username, colon, password = decoded.partition(":")
    if not colon or not username or not password:
        return InvalidCredentials("malformed Basic credentials")
    return BasicCredentials(username, Secret(password))


def credentials_from_form(username: str | None, password: str | None) -> Credentials:
    """The OAuth2 password grant's ``username`` and ``password`` fields, checked like Basic."""
    if not username or not password:
        return InvalidCredentials("username and password are required")
    return BasicCredentials(username, Secret(password))
