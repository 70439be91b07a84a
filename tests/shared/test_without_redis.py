"""Without REDIS_URL the service is what it was on one machine: redis is never imported, the
throttle counts in the instance's own store, health has no Redis check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from auth_service.http import EXTENSION
from auth_service.passwords.throttle import LocalBuckets

# Builds the app, logs in, refreshes, and asks for health and metrics: then lists the modules
# of redis-py that got imported.
CHILD = """
import base64, sys
from auth_service import create_app
client = create_app({"CONFIG_DIR": sys.argv[1]}).test_client()
basic = {"Authorization": "Basic " + base64.b64encode(b"alice:alice-pw").decode()}
login = client.get("/v2/token?service=registry.test&offline_token=true", headers=basic)
form = {"grant_type": "refresh_token", "refresh_token": login.get_json()["refresh_token"],
        "service": "registry.test", "client_id": "test"}
assert client.post("/v2/token", data=form).status_code == 200
assert client.get("/health").status_code == 200 and client.get("/metrics").status_code == 200
print(" ".join(name for name in sys.modules if name == "redis" or name.startswith("redis.")))
"""


def test_without_redis_url_redis_is_never_imported(config_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(config_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def test_without_redis_url_nothing_is_shared(app) -> None:
    service = app.extensions[EXTENSION]
    assert service.shared is None
    assert isinstance(service.passwords.throttle._records, LocalBuckets)
