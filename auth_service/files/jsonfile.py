"""Reading the JSON configuration files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from auth_service.errors import ConfigError


def read_json(path: Path) -> Any:
    """Decode a JSON config file, turning every failure into a one-line :class:`ConfigError`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise ConfigError(str(path), None, "file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), None, f"cannot be read: {exc}") from None
    return decode_json(path, data)


def decode_json(path: Path, data: bytes) -> Any:
    """Decode the content ``data`` of the JSON config file ``path``, as :func:`read_json`."""
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), None, f"cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(str(path), None, f"invalid JSON: {exc}") from None
