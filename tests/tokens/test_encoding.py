"""base64url as JWS, JWK and refresh tokens write it."""

from __future__ import annotations

import pytest

from auth_service.tokens.encoding import b64url, b64url_decode, b64url_uint


@pytest.mark.parametrize("data", [b"", b"\xff", b"\xfb\xff", b"\x00\x01\x02", bytes(range(64))])
def test_unpadded_url_safe_and_back(data: bytes) -> None:
    text = b64url(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64url_decode(text) == data


def test_integers_are_minimal_unless_a_length_is_given() -> None:
    assert b64url_uint(65537) == "AQAB"  # RFC 7518's example exponent
    assert b64url_uint(0) == "AA"
    assert b64url_decode(b64url_uint(1, 32)) == bytes(31) + b"\x01"  # fixed-length coordinates
