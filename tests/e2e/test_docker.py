"""The docker CLI and a private dockerd (Debian docker.io 20.10) against the real stack."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from auth_service.stack.main import Stack

from . import images
from .clients import (
    Dockerd,
    Result,
    Skopeo,
    mount_requests,
    mount_status,
    registry_tags,
    running_dockerd,
)
from .conftest import password

REPOSITORY = "docker/app"
SECOND_REPOSITORY = "docker/second"
PULL_REPOSITORY = "docker/pulled"
DENIED_REPOSITORY = "docker/denied"
PRIVATE_REPOSITORY = "docker/private"
LOCAL_NAME = "e2e/docker:1"
DENIED = "denied: requested access to the resource is denied"


@pytest.fixture(scope="module")
def dockerd(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """A dockerd for this module only, stopped by PID at the end."""
    with running_dockerd(tmp_path_factory.mktemp("dockerd"), stack.host) as running:
        yield running


@pytest.fixture(scope="module")
def client_configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Parent of one DOCKER_CONFIG per user, so logins don't overwrite each other."""
    return tmp_path_factory.mktemp("docker-config")


def login(dockerd: Dockerd, config: Path, host: str, user: str, secret: str) -> Result:
    """``docker login`` with the password on stdin, as scripts should do it."""
    return dockerd.docker(config, "login", "-u", user, "--password-stdin", host, stdin=secret)


@pytest.fixture(scope="module")
def as_user(stack: Stack, dockerd: Dockerd, client_configs: Path):
    """``as_user(name)`` -> a DOCKER_CONFIG directory where ``name`` is logged in."""

    def logged_in(user: str) -> Path:
        config = client_configs / user
        if not (config / "config.json").exists():
            result = login(dockerd, config, stack.host, user, password(user))
            assert result.rc == 0, result
        return config

    return logged_in


@pytest.fixture(scope="module")
def local_image(
    dockerd: Dockerd, client_configs: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """``e2e/docker:1`` loaded into dockerd from a docker-archive skopeo made."""
    directory = tmp_path_factory.mktemp("docker-image")
    image = images.build_image(directory / "oci", "1", "docker\n")
    archive = Skopeo(directory / "skopeo").convert(
        image, "docker-archive", directory / "image.tar", LOCAL_NAME
    )
    result = dockerd.docker(client_configs / "local", "load", "-i", str(archive))
    assert result.rc == 0, result
    assert LOCAL_NAME in result.output
    return LOCAL_NAME


def push(dockerd: Dockerd, config: Path, local: str, remote: str) -> Result:
    """Tag ``local`` as ``remote`` and push it with the credentials in ``config``."""
    tagged = dockerd.docker(config, "tag", local, remote)
    assert tagged.rc == 0, tagged
    return dockerd.docker(config, "push", remote)


def test_login_with_the_right_password(stack: Stack, dockerd: Dockerd, tmp_path: Path) -> None:
    result = login(dockerd, tmp_path, stack.host, "alice", password("alice"))
    assert result.rc == 0, result
    assert "Login Succeeded" in result.output
    assert stack.host in json.loads((tmp_path / "config.json").read_text())["auths"]


def test_login_with_a_wrong_password(stack: Stack, dockerd: Dockerd, tmp_path: Path) -> None:
    result = login(dockerd, tmp_path, stack.host, "alice", "wrong-password")
    assert result.rc != 0, result
    assert "unauthorized" in result.output
    config = tmp_path / "config.json"
    assert not config.exists() or stack.host not in config.read_text()


def test_push_and_a_second_push_mounts_the_layer(
    stack: Stack, dockerd: Dockerd, as_user, local_image: str
) -> None:
    first = push(dockerd, as_user("alice"), local_image, f"{stack.host}/{REPOSITORY}:1")
    assert first.rc == 0, first
    assert "Pushed" in first.output
    assert registry_tags(stack, REPOSITORY) == ["1"]

    second = push(dockerd, as_user("alice"), local_image, f"{stack.host}/{SECOND_REPOSITORY}:1")
    assert second.rc == 0, second
    assert f"Mounted from {REPOSITORY}" in second.output
    assert registry_tags(stack, SECOND_REPOSITORY) == ["1"]
    mounts = mount_requests(stack, SECOND_REPOSITORY, REPOSITORY)
    assert 201 in [mount_status(line) for line in mounts], mounts


def test_push_is_denied_to_a_pull_only_user(
    stack: Stack, dockerd: Dockerd, as_user, local_image: str
) -> None:
    result = push(dockerd, as_user("reader"), local_image, f"{stack.host}/{DENIED_REPOSITORY}:1")
    assert result.rc != 0, result
    assert DENIED in result.output
    assert registry_tags(stack, DENIED_REPOSITORY) is None


def test_pull(
    stack: Stack, dockerd: Dockerd, as_user, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # An image this dockerd has never seen, put there by another client.
    image = images.build_image(tmp_path_factory.mktemp("docker-pull") / "oci", "1", "pulled\n")
    reference = f"{stack.host}/{PULL_REPOSITORY}:1"
    Skopeo(tmp_path_factory.mktemp("docker-skopeo")).push(image, reference)

    result = dockerd.docker(as_user("reader"), "pull", reference)
    assert result.rc == 0, result
    assert f"Digest: {image.manifest_digest}" in result.output
    inspected = dockerd.docker(
        as_user("reader"), "image", "inspect", "--format", "{{json .RepoDigests}}", reference
    )
    assert inspected.rc == 0, inspected
    repo_digest = f"{stack.host}/{PULL_REPOSITORY}@{image.manifest_digest}"
    assert json.loads(inspected.output) == [repo_digest]


def test_pull_without_login_is_refused(
    stack: Stack, dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Seeded by skopeo, so this dockerd learns nothing that could change the mount test.
    image = images.build_image(tmp_path_factory.mktemp("docker-anon") / "oci", "1", "private\n")
    reference = f"{stack.host}/{PRIVATE_REPOSITORY}:1"
    Skopeo(tmp_path_factory.mktemp("docker-anon-skopeo")).push(image, reference)

    result = dockerd.docker(tmp_path_factory.mktemp("docker-anonymous"), "pull", reference)
    assert result.rc != 0, result
    # dockerd's wording when the registry refuses an anonymous pull.
    assert "pull access denied" in result.output, result
