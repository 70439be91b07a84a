"""containerd's ctr, with a private containerd, against the real stack.

ctr first tries the OAuth2 password grant (POST) and falls back to GET with Basic auth when the
token service answers 405: these tests pass with or without POST support.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from auth_service.stack.main import Stack

from . import images
from .clients import Containerd, Skopeo, access_log, registry_tags, running_containerd
from .conftest import password

REPOSITORY = "ctr/app"
PULL_REPOSITORY = "ctr/pulled"
DENIED_REPOSITORY = "ctr/denied"


def credentials(user: str, secret: str | None = None) -> str:
    return f"{user}:{password(user) if secret is None else secret}"


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """A containerd for this module only, stopped by PID at the end."""
    with running_containerd(tmp_path_factory.mktemp("containerd")) as running:
        yield running


@pytest.fixture(scope="module")
def local_image(
    stack: Stack, containerd: Containerd, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """``HOST/ctr/app:1`` in containerd's image store, imported from an oci-archive."""
    directory = tmp_path_factory.mktemp("ctr-image")
    image = images.build_image(directory / "oci", "1", "ctr\n")
    archive = Skopeo(directory / "skopeo").convert(image, "oci-archive", directory / "oci.tar", "1")
    name = f"{stack.host}/{REPOSITORY}"
    # The archive names the image by its tag only; --base-name puts the repository in front.
    result = containerd.ctr("images", "import", "--base-name", name, "--digests", str(archive))
    assert result.rc == 0, result
    reference = f"{name}:1"
    assert reference in containerd.ctr("images", "ls", "-q").output
    return reference


@pytest.fixture(scope="module")
def seeded(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> images.Image:
    """``ctr/pulled:1`` in the registry, pushed by skopeo: content this containerd never saw."""
    image = images.build_image(tmp_path_factory.mktemp("ctr-pull") / "oci", "1", "ctr pulled\n")
    Skopeo(tmp_path_factory.mktemp("ctr-skopeo")).push(image, f"{stack.host}/{PULL_REPOSITORY}:1")
    return image


def test_pull_with_credentials(stack: Stack, containerd: Containerd, seeded: images.Image) -> None:
    reference = f"{stack.host}/{PULL_REPOSITORY}:1"
    result = containerd.ctr(
        "images", "pull", "--plain-http", "--user", credentials("alice"), reference
    )
    assert result.rc == 0, result
    listed = containerd.ctr("images", "ls")
    assert any(
        line.split()[0] == reference and seeded.manifest_digest in line
        for line in listed.output.splitlines()[1:]
    ), listed
    assert seeded.layer_digest in containerd.ctr("content", "ls", "-q").output.split()


def test_pull_with_a_wrong_password_fails(
    stack: Stack, containerd: Containerd, seeded: images.Image
) -> None:
    result = containerd.ctr(
        "images", "pull", "--plain-http", "--user", credentials("alice", "wrong-password"),
        f"{stack.host}/{PULL_REPOSITORY}:1",
    )  # fmt: skip
    assert result.rc != 0, result
    assert "401" in result.output, result


def test_push_is_denied_to_a_pull_only_user(
    stack: Stack, containerd: Containerd, local_image: str
) -> None:
    result = containerd.ctr(
        "images", "push", "--plain-http", "--user", credentials("reader"),
        f"{stack.host}/{DENIED_REPOSITORY}:1", local_image,
    )  # fmt: skip
    assert result.rc != 0, result
    assert "insufficient_scope" in result.output, result
    assert registry_tags(stack, DENIED_REPOSITORY) is None


def test_push_with_credentials(stack: Stack, containerd: Containerd, local_image: str) -> None:
    result = containerd.ctr(
        "images", "push", "--plain-http", "--user", credentials("alice"), local_image
    )
    assert result.rc == 0, result
    assert registry_tags(stack, REPOSITORY) == ["1"]
    # containerd's token requests reached the service (by POST, or GET after a 405).
    assert any("/v2/token" in line and "containerd" in line for line in access_log(stack))
