"""base64url without padding: how JWS, JWK and refresh tokens write binary values.

(Their JSON is :func:`auth_service.records.json_text.wire_json`.)
"""

from __future__ import annotations

import base64


def b64url(data: bytes) -> str:
    """base64url without padding, as JWS and JWK write binary values."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The bytes of unpadded base64url ``text``; raises ``binascii.Error`` if it is not."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_uint(number: int, length: int | None = None) -> str:
    """A non-negative integer as JWK writes it: big-endian, base64url; in ``length`` bytes, or
    without leading zero bytes if no ``length`` is given."""
    length = length or max(1, (number.bit_length() + 7) // 8)
    return b64url(number.to_bytes(length, "big"))
