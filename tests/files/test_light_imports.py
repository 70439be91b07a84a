"""The pure modules load without Flask, and without what they don't use: a reader of the access
rules or the settings (the command line, a test, a tool) pays for none of it."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Modules whose import sets things up: metrics chooses and empties a directory, sets variables.
WITH_SIDE_EFFECTS = ("auth_service.records.metrics", "prometheus_client")


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("auth_service.access.policy", ("flask", *WITH_SIDE_EFFECTS)),
        ("auth_service.files.users", ("flask", *WITH_SIDE_EFFECTS)),
        ("auth_service.files.settings", ("flask", "jwt", "cryptography", *WITH_SIDE_EFFECTS)),
    ],
)
def test_a_pure_module_imports_nothing_it_does_not_need(module: str, absent: tuple[str, ...]):
    code = f"import sys, {module}; print(' '.join(m for m in {absent!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == []
