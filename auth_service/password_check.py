"""One password check, in order of cost: throttled? → recently verified? → bcrypt.

:mod:`.login_throttle` answers a guesser before any work, :mod:`.credential_cache` answers a
returning client without bcrypt, and :mod:`.bcrypt_gate` bounds (and shares) the bcrypt checks
that remain. :meth:`.users.UserDirectory.verify_password` does the check itself.
"""

from __future__ import annotations

from . import metrics
from .bcrypt_gate import BcryptGate
from .credential_cache import CredentialCache
from .login_throttle import LoginThrottle
from .users import User, UserDirectory


class PasswordChecker:
    """Verifies a user's password the cheapest safe way; one per worker process."""

    def __init__(self, cache: CredentialCache, gate: BcryptGate, throttle: LoginThrottle) -> None:
        self.cache = cache
        self.gate = gate
        self.throttle = throttle

    def verify(
        self, users: UserDirectory, username: str, password: str, address: str | None
    ) -> User | None:
        """The user if the password is theirs, else None.

        Raises :class:`.login_throttle.Throttled` or :class:`.bcrypt_gate.Overloaded`.
        """
        self.throttle.check(address, username)
        fingerprint = self.cache.fingerprint(username, password)
        user = users.get(username)
        if self.cache.ttl > 0:
            hit = self.cache.accepts(fingerprint, user)
            metrics.count_credential_cache(hit)
            if hit:
                return user
        # Same login from the same address at the same time: one bcrypt check for all of them.
        flight = fingerprint + (address or "").encode("utf-8", "surrogatepass")

        def check() -> User | None:
            self.throttle.take(address, username)
            metrics.count_bcrypt_check()
            verified = users.verify_password(username, password)
            if verified is not None:
                self.throttle.forgive(address, username)
                self.cache.remember(fingerprint, verified)
            return verified

        return self.gate.run(flight, check)
