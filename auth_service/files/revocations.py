"""``revocations.json``: refresh tokens an operator has revoked, one by one or all of a user's.

    {"tokens": {"<token id>": <expiry, epoch seconds>},
     "users": {"alice": <epoch seconds: her refresh tokens issued before this are void>}}

It lives in the config directory, so every worker and every instance sharing that directory
sees the same list, and it survives restarts. Only the commands below write it: atomically, and
under a lock, so concurrent revocations are all kept. Expired entries are dropped when it is
written. A missing file revokes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auth_service.errors import ConfigError
from auth_service.files.atomic import locked_update
from auth_service.files.jsonfile import decode_json, read_json


@dataclass(frozen=True)
class Revocations:
    """Revoked token IDs (with their expiry) and per-user cut-off times."""

    tokens: Mapping[str, int] = field(default_factory=dict)
    users: Mapping[str, int] = field(default_factory=dict)

    def revokes(self, token_id: str, subject: str, issued_at: int) -> bool:
        """Whether a refresh token with these claims has been revoked."""
        cutoff = self.users.get(subject)
        return token_id in self.tokens or (cutoff is not None and issued_at <= cutoff)

    def document(self) -> dict[str, Any]:
        return {"tokens": dict(self.tokens), "users": dict(self.users)}


def _int_map(path: Path, document: Mapping[str, Any], key: str) -> dict[str, int]:
    value = document.get(key, {})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        raise ConfigError(str(path), key, "must be an object of name: epoch seconds")
    return value


def parse_revocations(path: Path, document: Any) -> Revocations:
    """Validate a decoded ``revocations.json``."""
    if not isinstance(document, dict):
        raise ConfigError(str(path), None, 'must be a JSON object {"tokens": {}, "users": {}}')
    unknown = set(document) - {"tokens", "users"}
    if unknown:
        raise ConfigError(str(path), sorted(unknown)[0], "unknown key (allowed: tokens, users)")
    return Revocations(_int_map(path, document, "tokens"), _int_map(path, document, "users"))


def load_revocations(path: Path) -> Revocations:
    """Read ``revocations.json``; no file means nothing is revoked."""
    if not path.exists():
        return Revocations()
    return parse_revocations(path, read_json(path))


def _update(path: Path, change) -> Revocations:
    """Apply ``change(tokens, users, now)`` to the file under the lock, dropping expired IDs."""
    updated = Revocations()

    def rewrite(data: bytes | None) -> bytes:
        nonlocal updated
        current = Revocations()
        if data is not None:
            current = parse_revocations(path, decode_json(path, data))
        now = int(time.time())
        tokens = {jti: exp for jti, exp in current.tokens.items() if exp > now}
        users = dict(current.users)
        change(tokens, users, now)
        updated = Revocations(tokens, users)
        return (json.dumps(updated.document(), indent=2) + "\n").encode()

    locked_update(path, rewrite)
    return updated


def revoke_token(path: Path, token_id: str, expires_at: int) -> Revocations:
    """Revoke one refresh token until it would have expired anyway."""
    return _update(path, lambda tokens, users, now: tokens.__setitem__(token_id, expires_at))


def revoke_user(path: Path, username: str) -> Revocations:
    """Revoke every refresh token of ``username`` issued until now."""
    return _update(path, lambda tokens, users, now: users.__setitem__(username, now))
