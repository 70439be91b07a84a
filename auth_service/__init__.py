"""A token server for the CNCF Distribution (Docker) registry's Bearer-token authentication.

The package imports nothing heavy by itself, so ``python3 -m auth_service.stack`` can run on a
fresh machine with only the standard library and install the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app; see :func:`auth_service.app.create_app`."""
    from auth_service.app import create_app as build

    return build(test_config)
