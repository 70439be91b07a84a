"""skopeo (containers/image) against the real stack: login, push, pull, tags, delete, mount."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auth_service.stack.main import Stack

from . import images
from .clients import Skopeo, access_log, mount_requests, mount_status, registry_tags
from .conftest import fetch_token, http, password

REPOSITORY = "skopeo/app"
SECOND_REPOSITORY = "skopeo/second"
DELETE_REPOSITORY = "skopeo/deleteme"


@pytest.fixture(scope="module")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    return Skopeo(tmp_path_factory.mktemp("skopeo"))


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> images.Image:
    return images.build_image(tmp_path_factory.mktemp("skopeo-image") / "oci", "1", "skopeo\n")


@pytest.fixture(scope="module")
def pushed(stack: Stack, skopeo: Skopeo, image: images.Image) -> str:
    """``skopeo/app:1`` in the registry, pushed by alice; the pushed reference."""
    destination = f"{stack.host}/{REPOSITORY}:1"
    skopeo.push(image, destination)
    return destination


def test_login_with_the_right_password_stores_credentials(stack: Stack, skopeo: Skopeo) -> None:
    auth_file = skopeo.directory / "login-good.json"
    result = skopeo(
        "login", "--tls-verify=false", "--authfile", str(auth_file),
        "-u", "alice", "-p", password("alice"), stack.host,
    )  # fmt: skip
    assert result.rc == 0, result
    assert "Login Succeeded" in result.output
    assert stack.host in json.loads(auth_file.read_text())["auths"]


def test_login_with_a_wrong_password_fails(stack: Stack, skopeo: Skopeo) -> None:
    auth_file = skopeo.directory / "login-bad.json"
    result = skopeo(
        "login", "--tls-verify=false", "--authfile", str(auth_file),
        "-u", "alice", "-p", "wrong-password", stack.host,
    )  # fmt: skip
    assert result.rc != 0, result
    # containers/image's wording for a 401 from the token endpoint.
    assert "invalid username/password" in result.output
    assert not auth_file.exists() or stack.host not in auth_file.read_text()


def test_push_puts_the_image_in_the_registry(
    stack: Stack, pushed: str, image: images.Image
) -> None:
    assert registry_tags(stack, REPOSITORY) == ["1"]
    # The registry answers with the manifest skopeo sent, byte for byte: same digest.
    token = fetch_token(stack, f"scope=repository:{REPOSITORY}:pull", user="reader")
    status, headers, _ = http(
        "HEAD",
        f"{stack.url}/v2/{REPOSITORY}/manifests/1",
        {"Authorization": f"Bearer {token}", "Accept": images.MANIFEST_TYPE},
    )
    assert status == 200
    assert headers["Docker-Content-Digest"] == image.manifest_digest


def test_pull_copies_the_image_back(
    stack: Stack, skopeo: Skopeo, pushed: str, image: images.Image, tmp_path: Path
) -> None:
    layout = tmp_path / "pulled"
    result = skopeo(
        "copy", "--src-tls-verify=false", "--src-creds", f"reader:{password('reader')}",
        f"docker://{pushed}", f"oci:{layout}:pulled",
    )  # fmt: skip
    assert result.rc == 0, result
    assert images.manifest_digest(layout, "pulled") == image.manifest_digest
    assert images.read_text(layout, "pulled") == image.text


def test_pull_with_a_wrong_password_fails(
    stack: Stack, skopeo: Skopeo, pushed: str, tmp_path: Path
) -> None:
    result = skopeo(
        "copy", "--src-tls-verify=false", "--src-creds", "reader:wrong-password",
        f"docker://{pushed}", f"oci:{tmp_path / 'pulled'}:pulled",
    )  # fmt: skip
    assert result.rc != 0, result
    assert "invalid username/password" in result.output


def test_list_tags_with_credentials_from_login(stack: Stack, skopeo: Skopeo, pushed: str) -> None:
    auth_file = skopeo.directory / "list-tags.json"
    login = skopeo(
        "login", "--tls-verify=false", "--authfile", str(auth_file),
        "-u", "reader", "-p", password("reader"), stack.host,
    )  # fmt: skip
    assert login.rc == 0, login
    result = skopeo(
        "list-tags", "--tls-verify=false", "--authfile", str(auth_file),
        f"docker://{stack.host}/{REPOSITORY}",
    )  # fmt: skip
    assert result.rc == 0, result
    assert json.loads(result.output)["Tags"] == ["1"]


def test_delete_needs_the_delete_right(stack: Stack, skopeo: Skopeo, tmp_path: Path) -> None:
    # An image of its own: clients must not learn of this repository as a source for mounts.
    image = images.build_image(tmp_path / "oci", "1", "skopeo delete\n")
    reference = f"docker://{stack.host}/{DELETE_REPOSITORY}:1"
    skopeo.push(image, f"{stack.host}/{DELETE_REPOSITORY}:1")

    denied = skopeo(
        "delete", "--tls-verify=false", "--creds", f"alice:{password('alice')}", reference
    )
    assert denied.rc != 0, denied
    assert "unauthorized" in denied.output.lower()
    assert registry_tags(stack, DELETE_REPOSITORY) == ["1"]

    deleted = skopeo(
        "delete", "--tls-verify=false", "--creds", f"admin:{password('admin')}", reference
    )
    assert deleted.rc == 0, deleted
    assert registry_tags(stack, DELETE_REPOSITORY) is None


def test_copy_to_a_second_repository_mounts_the_layer(
    stack: Stack, skopeo: Skopeo, pushed: str, image: images.Image
) -> None:
    credentials = f"alice:{password('alice')}"
    result = skopeo(
        "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
        "--src-creds", credentials, "--dest-creds", credentials,
        f"docker://{pushed}", f"docker://{stack.host}/{SECOND_REPOSITORY}:1",
    )  # fmt: skip
    assert result.rc == 0, result
    assert registry_tags(stack, SECOND_REPOSITORY) == ["1"]

    # The layer was not uploaded again: the registry mounted it from the first repository...
    mounts = mount_requests(stack, SECOND_REPOSITORY, REPOSITORY)
    mounted = [line for line in mounts if mount_status(line) == 201]
    assert mounted, f"no mount from {REPOSITORY} into {SECOND_REPOSITORY} got 201: {mounts}"
    assert image.layer_digest.split(":")[1] in mounted[0]
    # ...with a token that had both scopes: push on the target, pull on the source.
    token_requests = [
        line
        for line in access_log(stack)
        if "/v2/token?" in line
        and "skopeo%2Fsecond%3Apull%2Cpush" in line
        and "skopeo%2Fapp%3Apull" in line
    ]
    assert token_requests, "no token request asked for both repositories"
