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
        fingerprint = self.cache.fingerprint(username, password)
        # Same login from the same address at the same time: one bcrypt check for all of them.
        flight = fingerprint + (address or "").encode("utf-8", "surrogatepass")
        # Copies of a login being checked share its answer and cost nothing, so they are not
        # refused for the throttle token that check holds; every other attempt needs one left.
        if not self.gate.in_flight(flight):
            self.throttle.check(address, username)
        user = users.get(username)
        if self.cache.ttl > 0:
            hit = self.cache.accepts(fingerprint, user)
            metrics.count_credential_cache(hit)
            if hit:
                return user

        def check() -> User | None:
            # A check of this login may have ended between the lookup above and this one
            # starting: its success is in the cache now, and needs no bcrypt nor throttle token.
            if self.cache.accepts(fingerprint, user):  # always False with the cache off
                return user
            self.throttle.take(address, username)
            metrics.count_bcrypt_check()
            verified = users.verify_password(username, password)
            if verified is not None:
                self.throttle.forgive(address, username)
                self.cache.remember(fingerprint, verified)
            return verified

        return self.gate.run(flight, check)
