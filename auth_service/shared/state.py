"""What the app factory builds when ``REDIS_URL`` is set: one connection, and the throttle's
buckets and the revocations that use it."""

from __future__ import annotations

from dataclasses import dataclass

from auth_service.files.settings import Settings
from auth_service.passwords.throttle import Buckets, BucketStore, LocalBuckets
from auth_service.shared.buckets import FallbackBuckets, RedisBuckets
from auth_service.shared.connection import RedisConnection
from auth_service.shared.revocations import RevocationsInRedis


@dataclass(frozen=True)
class SharedState:
    """Redis, and the state the instances share in it."""

    connection: RedisConnection
    revocations: RevocationsInRedis

    @classmethod
    def from_settings(cls, settings: Settings) -> SharedState | None:
        """The shared state ``REDIS_URL`` names; None when it is unset. Connects to nothing
        yet: each process connects on first use."""
        if not settings.redis_url:
            return None
        connection = RedisConnection(settings.redis_url, settings.redis_timeout)
        return cls(connection, RevocationsInRedis(connection))

    def throttle_buckets(self, local: BucketStore) -> Buckets:
        """The login throttle's buckets in Redis, with ``local`` (this instance's store) for
        whenever Redis doesn't answer."""
        return FallbackBuckets(RedisBuckets(self.connection), LocalBuckets(local))
