"""The operator's path through the real stack, with only what the README's "Operating" shows.

Add a user with ``auth-service users add`` and watch them push (and be refused elsewhere) with
no restart; find the refused push in the audit log with the README's own jq command and in the
metrics; rotate the signing key the README's way, with the registry trusting the old and the new
certificate for a while, then only the new one.

It runs its own stack: it adds a user, edits config.py and restarts the registry and uWSGI,
which the other modules' stack must not see.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auth_service.stack.main import REPO, Stack

from . import images
from .clients import Skopeo, registry_tags, run
from .conftest import fetch_token, http, running_stack, wait_for_reload
from .test_operations import metric, wait_for_metrics

DAVE_PASSWORD = "dave-journey-pw"
DAVES_REPOSITORY = "dave/app"
SOMEONE_ELSES = "someone-else/app"


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("journey-stack")) as stack:
        yield stack


def auth_service(
    stack: Stack, *args: str, stdin: str = "", check: bool = True
) -> subprocess.CompletedProcess:
    """``auth-service ARGS`` as an operator runs it: the console script, with
    AUTH_SERVICE_CONFIG_DIR naming the running service's config directory."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "auth-service"), *args],
        input=stdin,
        env={**os.environ, "AUTH_SERVICE_CONFIG_DIR": str(stack.config_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 or not check, f"auth-service {' '.join(args)}:\n{result.stderr}"
    return result


def copy_as_dave(stack: Stack, skopeo: Skopeo, image: images.Image, repository: str) -> Any:
    """``skopeo copy`` of ``image`` to ``repository:1`` with dave's credentials."""
    return skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", f"dave:{DAVE_PASSWORD}",
        image.reference, f"docker://{stack.host}/{repository}:1",
    )  # fmt: skip


def readme_denied_push_command() -> tuple[str, str]:
    """What the README's audit-log section greps for, and the jq program it pipes that into."""
    readme = (REPO / "README.md").read_text()
    found = re.search(r"`grep '([^']+)' \.stack/uwsgi\.log \| jq '([^']+)'`", readme)
    assert found, "README.md: the audit log's grep | jq command to find a denied push is gone"
    return found.group(1), found.group(2)


def denied_pushes(stack: Stack) -> list[dict[str, Any]]:
    """The README's command, run on this stack's uWSGI log: the audit lines it selects."""
    grep_for, jq_program = readme_denied_push_command()
    log = stack.log_path("uwsgi").read_text(errors="replace").splitlines()
    grepped = "".join(line + "\n" for line in log if grep_for in line)
    selected = run(["jq", "-c", jq_program], stdin=grepped, timeout=30)
    assert selected.rc == 0, selected
    return [json.loads(line) for line in selected.output.splitlines()]


def key_id_of(token: str) -> str:
    """The ``kid`` in a token's header: the key the registry must verify it with."""
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def expires_at(token: str) -> int:
    claims = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["exp"]


def catalog_status(stack: Stack, token: str) -> int:
    """What the registry answers admin's catalog request made with ``token``."""
    return http("GET", f"{stack.url}/v2/_catalog", {"Authorization": f"Bearer {token}"})[0]


def trust_only(stack: Stack, *certificates: Path) -> None:
    """Step 2 and 4 of the README's rotation: the registry's rootcertbundle is these
    certificates, concatenated, and the registry is restarted (it reads it at start-up)."""
    bundle = stack.state_dir / "registry-bundle.crt"
    bundle.write_bytes(b"".join(path.read_bytes() for path in certificates))
    # The stack renders its registry.yml with cert_path as the rootcertbundle.
    stack.cert_path = bundle
    others = {name: stack.processes[name].pid for name in ("uwsgi", "nginx")}
    stack.restart("registry")
    assert {name: stack.processes[name].pid for name in others} == others  # only the registry


def test_a_new_user_pushes_at_once_and_a_denied_push_shows_in_log_and_metrics(
    own_stack: Stack, tmp_path: Path
) -> None:
    stack = own_stack
    wait_for_metrics()
    issued_before = metric(stack, "auth_token_requests_total", outcome="issued")
    push_denials_before = metric(stack, "auth_actions_requested_total", action="push") - metric(
        stack, "auth_actions_granted_total", action="push"
    )

    # The operator adds dave, password on standard input; nothing is restarted.
    added = auth_service(
        stack, "users", "add", "dave", "--grant", "dave/*=pull,push",
        "--cost", "4", "--password-stdin", stdin=DAVE_PASSWORD + "\n",
    )  # fmt: skip
    assert "added user 'dave'" in added.stdout
    assert DAVE_PASSWORD not in added.stdout + added.stderr
    listed = auth_service(stack, "users", "list", "--json")
    assert {"name": "dave", "groups": [], "repositories": {"dave/*": ["pull", "push"]},
            "catalog": False, "refresh_tokens": True} in json.loads(listed.stdout)  # fmt: skip
    wait_for_reload()

    # dave pushes to his namespace; his push to someone else's is refused by the registry.
    skopeo = Skopeo(tmp_path / "skopeo")
    image = images.build_image(tmp_path / "oci", "1", "the operator's journey\n")
    pushed = copy_as_dave(stack, skopeo, image, DAVES_REPOSITORY)
    assert pushed.rc == 0, pushed
    assert registry_tags(stack, DAVES_REPOSITORY) == ["1"]
    refused = copy_as_dave(stack, skopeo, image, SOMEONE_ELSES)
    assert refused.rc != 0, refused
    assert "denied" in refused.output or "unauthorized" in refused.output.lower(), refused
    assert registry_tags(stack, SOMEONE_ELSES) is None

    # The README's grep | jq finds the refused push: asked for, not granted.
    daves = [line for line in denied_pushes(stack) if line["user"] == "dave"]
    assert daves, "the README's jq command found no denied push by dave"
    for line in daves:
        assert f"repository:{SOMEONE_ELSES}:pull,push" in line["scopes"], line
        assert not any(SOMEONE_ELSES in granted for granted in line["access"]), line
        assert line["outcome"] == "issued" and line["status"] == 200
    # ... and only that one: dave's allowed push is not among them.
    assert not any(DAVES_REPOSITORY in scope for line in daves for scope in line["scopes"])

    # The metrics show tokens issued and pushes asked for but not granted.
    wait_for_metrics()
    assert metric(stack, "auth_token_requests_total", outcome="issued") > issued_before
    push_denials = metric(stack, "auth_actions_requested_total", action="push") - metric(
        stack, "auth_actions_granted_total", action="push"
    )
    assert push_denials > push_denials_before


def test_rotating_the_signing_key_keeps_old_tokens_until_the_old_certificate_goes(
    own_stack: Stack,
) -> None:
    stack = own_stack
    config = stack.config_dir
    old_cert = config / "token.crt"
    new_key, new_cert = config / "token-2.key", config / "token-2.crt"
    catalog = "scope=registry:catalog:*"
    old_token = fetch_token(stack, catalog, user="admin")
    assert catalog_status(stack, old_token) == 200

    # 1. A new key pair beside the old one.
    auth_service(stack, "keys", "generate", "--key", str(new_key), "--cert", str(new_cert))
    assert new_key.stat().st_mode & 0o777 == 0o600
    jwks = json.loads(auth_service(stack, "keys", "jwks", "--cert", str(new_cert)).stdout)
    new_kid = jwks["keys"][0]["kid"]
    assert key_id_of(old_token) != new_kid

    # 2. The registry trusts both certificates.
    trust_only(stack, old_cert, new_cert)
    assert catalog_status(stack, old_token) == 200

    # 3. The service signs with the new key: config.py, config check, restart uWSGI.
    config_py = (config / "config.py").read_text()
    config_py, switched = re.subn(r"(?m)^KEY_PATH = .*$", "KEY_PATH = 'token-2.key'", config_py)
    config_py, switched_cert = re.subn(
        r"(?m)^CERT_PATH = .*$", "CERT_PATH = 'token-2.crt'", config_py
    )
    assert switched == switched_cert == 1, config_py
    (config / "config.py").write_text(config_py)
    # config check's only complaints: the e2e users' cheap bcrypt hashes, not the new pair.
    checked = auth_service(stack, "config", "check", check=False)
    problems = [line for line in checked.stdout.splitlines() if "cost 4 is weak" not in line]
    assert problems == [], checked.stdout
    registry_pid = stack.processes["registry"].pid
    stack.restart("uwsgi")
    assert stack.processes["registry"].pid == registry_pid

    new_token = fetch_token(stack, catalog, user="admin")
    assert key_id_of(new_token) == new_kid
    assert expires_at(old_token) > time.time() + 60  # the old token is still in its lifetime
    assert catalog_status(stack, old_token) == 200
    assert catalog_status(stack, new_token) == 200
    assert http("GET", f"{stack.url}/auth/health")[0] == 200

    # 4. Once old tokens have expired, the registry trusts only the new certificate: a token
    # signed with the old key, had one survived, is refused.
    trust_only(stack, new_cert)
    assert catalog_status(stack, new_token) == 200
    assert catalog_status(stack, old_token) == 401
