"""Refresh tokens with real clients: docker's identity token, skopeo's, containerd's POST.

This module runs its own stack (its own users.json), because it changes a password and revokes
tokens, which the other modules' users must not see.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from auth_service.stack.main import Stack

from .. import helpers
from . import images
from .clients import Dockerd, Skopeo, access_log, running_containerd, running_dockerd
from .conftest import SERVICE, basic_auth, http, password, running_stack, wait_for_reload

LOCAL_NAME = "e2e/refresh:1"


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("refresh-stack")) as stack:
        yield stack


def refresh_grant(token: str, scope: str) -> tuple[dict[str, str], bytes]:
    """Headers and body of docker's refresh grant."""
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "docker",
            "service": SERVICE, "scope": scope}  # fmt: skip
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return headers, urllib.parse.urlencode(form).encode()


@pytest.fixture(scope="module")
def dockerd(own_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    with running_dockerd(tmp_path_factory.mktemp("refresh-dockerd"), own_stack.host) as running:
        yield running


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> images.Image:
    return images.build_image(tmp_path_factory.mktemp("refresh-image") / "oci", "1", "refresh\n")


def token_requests(stack: Stack, method: str, status: int) -> list[str]:
    """Access-log lines of token requests with this method and status."""
    pattern = re.compile(rf'"{method} /v2/token[ ?][^"]*" {status} ')
    return [line for line in access_log(stack) if pattern.search(line)]


def refresh_token_of(stack: Stack, user: str) -> str:
    """What `docker login` gets: a refresh token from GET with offline_token=true."""
    status, _, body = http(
        "GET",
        f"{stack.realm}?account={user}&client_id=docker&offline_token=true&service={SERVICE}",
        basic_auth(user),
    )
    assert status == 200, body
    return json.loads(body)["refresh_token"]


def set_password(stack: Stack, user: str, new_password: str) -> None:
    users_path = stack.config_dir / "users.json"
    users = json.loads(users_path.read_text())
    users[user]["pass_hash"] = helpers.hash_password(new_password)
    helpers.write_json(users_path, users)
    wait_for_reload()


def auth_service_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    """The operator's command line, on this stack's config directory."""
    return subprocess.run(
        [sys.executable, "-c", "from auth_service.cli.main import main; main()", *args],
        env={"AUTH_SERVICE_CONFIG_DIR": str(stack.config_dir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_docker_keeps_an_identity_token_and_loses_it_with_the_password(
    own_stack: Stack, dockerd: Dockerd, image: images.Image, tmp_path: Path
) -> None:
    archive = Skopeo(tmp_path / "skopeo").convert(
        image, "docker-archive", tmp_path / "image.tar", LOCAL_NAME
    )
    config = tmp_path / "docker"
    loaded = dockerd.docker(config, "load", "-i", str(archive))
    assert loaded.rc == 0, loaded

    login = dockerd.docker(
        config, "login", "-u", "alice", "--password-stdin", own_stack.host, stdin=password("alice")
    )
    assert login.rc == 0, login
    stored = json.loads((config / "config.json").read_text())["auths"][own_stack.host]
    assert stored["identitytoken"].startswith("rt1.")
    assert base64.b64decode(stored["auth"]) == b"alice:"  # docker dropped the password
    assert password("alice") not in (config / "config.json").read_text()

    posts_before = len(token_requests(own_stack, "POST", 200))
    remote = f"{own_stack.host}/alice/refresh:1"
    assert dockerd.docker(config, "tag", LOCAL_NAME, remote).rc == 0
    pushed = dockerd.docker(config, "push", remote)
    assert pushed.rc == 0, pushed
    assert dockerd.docker(config, "rmi", remote).rc == 0
    pulled = dockerd.docker(config, "pull", remote)
    assert pulled.rc == 0, pulled
    # docker used its identity token: refresh grants by POST, no password anywhere
    assert len(token_requests(own_stack, "POST", 200)) > posts_before

    set_password(own_stack, "alice", "a-new-password")
    assert dockerd.docker(config, "rmi", remote).rc == 0
    refused = dockerd.docker(config, "pull", remote)
    assert refused.rc != 0, refused
    assert "log in again" in refused.output, refused
    assert token_requests(own_stack, "POST", 401)


def test_operator_revokes_every_token_of_a_user(own_stack: Stack) -> None:
    headers, form = refresh_grant(refresh_token_of(own_stack, "admin"), "repository:x/y:pull")
    assert http("POST", own_stack.realm, headers, form)[0] == 200

    result = auth_service_cli(own_stack, "tokens", "revoke-user", "admin")
    assert result.returncode == 0, result.stderr
    wait_for_reload()
    status, _, body = http("POST", own_stack.realm, headers, form)
    assert status == 401
    assert json.loads(body)["errors"][0]["code"] == "UNAUTHORIZED"


def test_the_same_refresh_token_works_many_times(own_stack: Stack) -> None:
    headers, form = refresh_grant(refresh_token_of(own_stack, "reader"), "repository:a/b:pull")
    statuses = [http("POST", own_stack.realm, headers, form)[0] for _ in range(50)]
    assert statuses == [200] * 50


def test_a_refresh_token_is_no_access_token(own_stack: Stack) -> None:
    token = refresh_token_of(own_stack, "reader")
    status, _, _ = http("GET", f"{own_stack.url}/v2/", {"Authorization": f"Bearer {token}"})
    assert status == 401


def test_skopeo_pulls_with_an_identity_token(
    own_stack: Stack, image: images.Image, tmp_path: Path
) -> None:
    skopeo = Skopeo(tmp_path / "skopeo")
    skopeo.push(image, f"{own_stack.host}/skopeo/refresh:1", user="admin")

    auth = {
        "auths": {
            own_stack.host: {
                "auth": base64.b64encode(b"reader:").decode(),
                "identitytoken": refresh_token_of(own_stack, "reader"),
            }
        }
    }
    skopeo.auth_file.write_text(json.dumps(auth))
    chunked_posts_before = len(token_requests(own_stack, "POST", 200))
    result = skopeo(
        "copy", "--src-tls-verify=false", f"docker://{own_stack.host}/skopeo/refresh:1",
        f"oci:{tmp_path / 'pulled'}:1",
    )  # fmt: skip
    assert result.rc == 0, result
    # containers/image sends the refresh grant chunked: it reached the app through nginx
    assert len(token_requests(own_stack, "POST", 200)) > chunked_posts_before


def test_containerd_uses_the_password_grant(
    own_stack: Stack, image: images.Image, tmp_path: Path
) -> None:
    reference = f"{own_stack.host}/ctr/refresh:1"
    Skopeo(tmp_path / "skopeo").push(image, reference, user="admin")
    posts_before = len(token_requests(own_stack, "POST", 200))
    gets_before = len(token_requests(own_stack, "GET", 200))
    with running_containerd(tmp_path / "containerd") as containerd:
        result = containerd.ctr(
            "images", "pull", "--plain-http", "--user", f"reader:{password('reader')}", reference
        )
    assert result.rc == 0, result
    assert len(token_requests(own_stack, "POST", 200)) > posts_before
    assert len(token_requests(own_stack, "GET", 200)) == gets_before  # no GET fallback needed
