"""Reading the JSON configuration files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ConfigError


def read_json(path: Path) -> Any:
    """Decode a JSON config file, turning every failure into a one-line :class:`ConfigError`."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise ConfigError(str(path), None, "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), None, f"cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(str(path), None, f"invalid JSON: {exc}") from None
