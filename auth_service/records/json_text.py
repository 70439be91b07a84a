"""The project's compact JSON, in its two forms: for the wire, and for log lines people read.

Each encoder is made once: ``json.dumps`` with options builds a new one on every call.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

_ascii_encoder = json.JSONEncoder(separators=(",", ":"))
_readable_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

# The JSON encoder escapes U+0000-U+001F itself; of what it leaves raw, these categories are
# escaped too: controls (DEL, C1), format characters (invisible, bidirectional overrides),
# surrogates, and the line and paragraph separators.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_BEYOND_ASCII = re.compile("[\x7f-\U0010ffff]")


def wire_json(value: Any) -> str:
    """Compact ASCII JSON: HTTP bodies and JWT segments, which every client decodes alike."""
    return _ascii_encoder.encode(value)


def log_json(value: Any) -> str:
    """Compact JSON for a log line: non-ASCII names stay readable, and nothing a client sent can
    end the line or act on a terminal (:func:`escape_invisible`)."""
    return escape_invisible(_readable_encoder.encode(value))


def _json_escape(match: re.Match[str]) -> str:
    char = match.group()
    if unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # JSON has no escape beyond U+FFFF: a UTF-16 surrogate pair
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def escape_invisible(json_text: str) -> str:
    """``json_text`` with every control, format or line-separator character JSON left raw
    written as a ``\\uXXXX`` escape: the same JSON value, on one line for any line splitter."""
    if json_text.isascii() and "\x7f" not in json_text:
        return json_text  # nearly every line: nothing to look at
    return _BEYOND_ASCII.sub(_json_escape, json_text)
