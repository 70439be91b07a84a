"""State that several instances of the service share through Redis, when ``REDIS_URL`` is set.

- :mod:`.connection`: the client (one per process, short timeouts, no retries) and the one way
  to use it, through :mod:`.breaker`, which stops trying for a second after a failure;
- :mod:`.buckets`: the login throttle's buckets, spent by Lua scripts on Redis's clock, with the
  instance's own buckets as the fallback;
- :mod:`.revocations`: revoked refresh tokens, written by ``auth-service tokens``, read through
  a snapshot each process keeps fresh (and keeps using while Redis is away);
- :mod:`.state`: the three built from the settings, for the app factory.

Without ``REDIS_URL`` none of this is used, and ``redis`` is never imported.
"""
