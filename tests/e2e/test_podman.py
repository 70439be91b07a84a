"""podman (containers/image, vfs storage in a temporary directory) against the real stack."""

from __future__ import annotations

import json

import pytest

from auth_service.stack.main import Stack

from . import images
from .clients import Podman, Result, Skopeo, registry_tags
from .conftest import password

REPOSITORY = "podman/app"
PULL_REPOSITORY = "podman/pulled"
DENIED_REPOSITORY = "podman/denied"


@pytest.fixture(scope="module")
def podman(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Podman:
    return Podman(tmp_path_factory.mktemp("podman"), stack.host)


@pytest.fixture(scope="module")
def login(stack: Stack, podman: Podman) -> Result:
    """alice logs in once; later podman commands use the stored credentials."""
    return podman("login", "-u", "alice", "-p", password("alice"), stack.host)


@pytest.fixture(scope="module")
def local_image(
    stack: Stack, podman: Podman, tmp_path_factory: pytest.TempPathFactory
) -> images.Image:
    """An image in podman's storage, tagged ``HOST/podman/app:1``."""
    image = images.build_image(tmp_path_factory.mktemp("podman-image") / "oci", "1", "podman\n")
    pulled = podman("pull", image.reference)
    assert pulled.rc == 0, pulled
    image_id = pulled.output.strip().splitlines()[-1]
    tagged = podman("tag", image_id, f"{stack.host}/{REPOSITORY}:1")
    assert tagged.rc == 0, tagged
    return image


def test_login_with_the_right_password_stores_credentials(
    stack: Stack, podman: Podman, login: Result
) -> None:
    assert login.rc == 0, login
    assert "Login Succeeded" in login.output
    assert stack.host in json.loads(podman.auth_file.read_text())["auths"]


def test_login_with_a_wrong_password_fails(stack: Stack, podman: Podman) -> None:
    auth_file = podman.directory / "bad-login.json"
    result = podman(
        "login", "--authfile", str(auth_file), "-u", "alice", "-p", "wrong-password", stack.host
    )
    assert result.rc != 0, result
    assert "invalid username/password" in result.output
    assert not auth_file.exists() or stack.host not in auth_file.read_text()


def test_push_with_stored_credentials(
    stack: Stack, podman: Podman, login: Result, local_image: images.Image
) -> None:
    assert login.rc == 0, login
    result = podman("push", f"{stack.host}/{REPOSITORY}:1")
    assert result.rc == 0, result
    assert registry_tags(stack, REPOSITORY) == ["1"]


def test_push_is_denied_to_a_pull_only_user(
    stack: Stack, podman: Podman, local_image: images.Image
) -> None:
    result = podman(
        "push", "--creds", f"reader:{password('reader')}",
        f"{stack.host}/{REPOSITORY}:1", f"{stack.host}/{DENIED_REPOSITORY}:1",
    )  # fmt: skip
    assert result.rc != 0, result
    assert "denied" in result.output
    assert registry_tags(stack, DENIED_REPOSITORY) is None


def test_pull_with_stored_credentials(
    stack: Stack, podman: Podman, login: Result, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # An image podman has never seen, put there by another client.
    image = images.build_image(tmp_path_factory.mktemp("podman-pull") / "oci", "1", "pulled\n")
    seeder = Skopeo(tmp_path_factory.mktemp("podman-skopeo"))
    seeder.push(image, f"{stack.host}/{PULL_REPOSITORY}:1")
    assert login.rc == 0, login

    reference = f"{stack.host}/{PULL_REPOSITORY}:1"
    result = podman("pull", reference)
    assert result.rc == 0, result
    digest = podman("image", "inspect", "--format", "{{.Digest}}", reference)
    assert digest.rc == 0, digest
    assert digest.output.strip() == image.manifest_digest


def test_pull_without_credentials_is_refused(
    stack: Stack, podman: Podman, local_image: images.Image
) -> None:
    pushed = podman("push", "--creds", f"alice:{password('alice')}", f"{stack.host}/{REPOSITORY}:1")
    assert pushed.rc == 0, pushed
    anonymous = podman.directory / "anonymous.json"
    anonymous.write_text("{}")
    result = podman("pull", "--authfile", str(anonymous), f"{stack.host}/{REPOSITORY}:1")
    assert result.rc != 0, result
    # The anonymous token grants nothing on podman/app, so the registry refuses the manifest.
    assert "unauthorized" in result.output.lower(), result
