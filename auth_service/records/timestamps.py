"""UTC times in RFC 3339, as the token response and the audit log write them.

Formatting a time costs more than most of a token request's own work, and within one second
every request formats the same one: the part down to the second is kept for the last few
seconds asked.
"""

from __future__ import annotations

import datetime as dt
import functools


@functools.lru_cache(maxsize=4)
def _to_the_second(epoch_seconds: int) -> str:
    return dt.datetime.fromtimestamp(epoch_seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def rfc3339_seconds(epoch_seconds: int) -> str:
    """``2026-11-23T12:30:05Z``: what Go's time.Time decodes (the ``issued_at`` field)."""
    return _to_the_second(epoch_seconds) + "Z"


def rfc3339_millis(epoch: float) -> str:
    """``2026-11-23T12:30:05.123Z``: to the millisecond, for log lines."""
    seconds = int(epoch)
    return f"{_to_the_second(seconds)}.{int((epoch - seconds) * 1000):03d}Z"
