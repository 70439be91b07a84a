"""One password check, in order of cost: usable? → throttled? → recently verified? → bcrypt.

A password bcrypt can never match is refused before anything else, :mod:`.throttle` answers a
guesser before any work, :mod:`.credential_cache` answers a returning client without bcrypt, and
:mod:`.bcrypt_turns` gives the checks that remain their fair turn on the cores.
:meth:`auth_service.files.users.UserDirectory.verify_password` does the check itself.
"""

from __future__ import annotations

from pathlib import Path

from auth_service.files.users import BCRYPT_MAX_PASSWORD_BYTES, User, UserDirectory
from auth_service.passwords import rehash
from auth_service.passwords.bcrypt_turns import BcryptGate
from auth_service.passwords.credential_cache import CredentialCache
from auth_service.passwords.throttle import LoginThrottle
from auth_service.records import metrics


def bcrypt_can_check(password: str) -> bool:
    """Whether bcrypt could ever accept this password: it reads 72 bytes at most, and no NUL.

    A password it can't is refused at once: the answer depends on the input alone, so it tells
    nothing about the user, and it takes no bcrypt turn from anyone.
    """
    secret = password.encode("utf-8", "surrogatepass")
    return len(secret) <= BCRYPT_MAX_PASSWORD_BYTES and b"\0" not in secret


class PasswordChecker:
    """Verifies a user's password the cheapest safe way; one per worker process."""

    def __init__(
        self,
        users_path: Path,
        cache: CredentialCache,
        gate: BcryptGate,
        throttle: LoginThrottle,
    ) -> None:
        self.users_path = users_path  # where a hash at another cost than the target is replaced
        self.cache = cache
        self.gate = gate
        self.throttle = throttle

    def verify(
        self,
        users: UserDirectory,
        username: str,
        password: str,
        address: str | None,
        may_rehash: bool = True,
    ) -> User | None:
        """The user if the password is theirs, else None.

        ``may_rehash``: a hash at another cost than the target is replaced after a successful
        check. Not for a login that gets a refresh token: that token is bound to the hash it was
        checked against, which the rehash would void at once. Raises
        :class:`auth_service.errors.Throttled` or :class:`auth_service.errors.Overloaded`.
        """
        if not bcrypt_can_check(password):
            return None
        user = users.get(username)
        fingerprint = self.cache.fingerprint(username, password)
        # Same login from the same address at the same time: one bcrypt check for all of them.
        # The user's hash is part of it, so a request that already reads a new users.json never
        # takes the answer of a check against the old hash.
        flight = b"".join(
            (
                fingerprint,
                user.pass_hash if user is not None else b"-",
                (address or "").encode("utf-8", "surrogatepass"),
            )
        )
        # Copies of a login being checked share its answer and cost nothing, so they are not
        # refused for the throttle token that check holds; every other attempt needs one left.
        if not self.gate.in_flight(flight):
            self.throttle.check(address, username)
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
                cost = users.rehash_cost(verified) if may_rehash else None
                if cost is not None:  # still on this turn: the rehash is bcrypt work too
                    rehash.update_hash(
                        self.users_path, verified.name, verified.pass_hash, password, cost
                    )
            return verified

        return self.gate.run(flight, check, address or "", username)
