"""Proxy mode end to end: nginx asks the token service about each registry request
(nginx/auth-proxy.conf), and real clients use the registry with nothing but Basic credentials.

The registry (Debian's docker-registry 2.8) keeps token auth: whatever reaches it carries a token
the service signed. This module runs its own stack, in proxy mode.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from auth_service.stack.main import PROXY_MODE, Stack

from . import images
from .clients import Podman, Skopeo, registry_tags, run, running_containerd, running_dockerd
from .conftest import fetch_token, http, password, running_stack

PUBLIC = "public/app"  # anonymously pullable (conftest.PUBLIC_REPOSITORIES)


@dataclass
class ProxyStack(Stack):
    """The e2e stack, rendered with AUTH_MODE=proxy."""

    auth_mode: str = PROXY_MODE


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """This module's own stack, in proxy mode (the session's token-mode stack is not used)."""
    with running_stack(tmp_path_factory.mktemp("proxy-stack"), kind=ProxyStack) as running:
        assert running.auth_mode == PROXY_MODE
        yield running


# --- curl ---------------------------------------------------------------------------------------


def curl(
    stack: Stack, method: str, path: str, user: str | None = None, secret: str | None = None,
    headers: dict[str, str] | None = None, data: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """One request by the curl program, with ``-u USER:PASSWORD`` when ``user`` is given;
    (status, headers of the final response with lower-case names, body)."""
    with tempfile.TemporaryDirectory() as directory:
        head, body = Path(directory) / "head", Path(directory) / "body"
        args = ["curl", "-sS", "-X", method, "-D", str(head), "-o", str(body), "-w", "%{http_code}"]
        if method == "HEAD":
            args[2:4] = ["-I"]  # curl -X HEAD would wait for a body
        if user is not None:
            args += ["-u", f"{user}:{password(user) if secret is None else secret}"]
        headers = dict(headers or {})
        if data is not None:  # not curl's default, a form, which the registry would parse
            headers.setdefault("Content-Type", "application/octet-stream")
        for name, value in headers.items():
            args += ["-H", f"{name}: {value}"]
        if data is not None:
            (Path(directory) / "data").write_bytes(data)
            args += ["--data-binary", f"@{Path(directory) / 'data'}"]
        url = path if path.startswith("http") else f"{stack.url}{path}"
        result = run([*args, url])
        assert result.rc == 0, result
        # The last block: a 100 Continue comes first when curl sent Expect.
        blocks = [b for b in head.read_text(errors="replace").split("\r\n\r\n") if b.strip()]
        lines = blocks[-1].splitlines()[1:]
        found = {}
        for line in lines:
            name, _, value = line.partition(":")
            found[name.strip().lower()] = value.strip()
        return int(result.output.strip()[-3:]), found, body.read_bytes() if body.exists() else b""


def errors_of(body: bytes) -> list[str]:
    return [error["code"] for error in json.loads(body)["errors"]]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def seeded(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> images.Image:
    """``proxy/pulled:1`` and the public repository's ``1``, pushed by skopeo with Basic
    credentials only (--dest-creds): the push itself goes through proxy mode."""
    image = images.build_image(tmp_path_factory.mktemp("proxy-image") / "oci", "1", "proxied\n")
    skopeo = Skopeo(tmp_path_factory.mktemp("proxy-skopeo"))
    skopeo.push(image, f"{stack.host}/proxy/pulled:1")
    skopeo.push(image, f"{stack.host}/{PUBLIC}:1", user="admin")
    return image


def test_v2_with_credentials_and_without(stack: Stack) -> None:
    status, headers, _ = curl(stack, "GET", "/v2/", "alice")
    assert status == 200
    assert headers["docker-distribution-api-version"] == "registry/2.0"
    status, headers, body = curl(stack, "GET", "/v2/")
    assert status == 401
    assert headers["www-authenticate"].startswith('Basic realm="')
    assert headers["content-type"] == "application/json"
    assert errors_of(body) == ["UNAUTHORIZED"]


def test_curl_pulls_a_manifest_and_a_blob(stack: Stack, seeded: images.Image) -> None:
    accept = {"Accept": images.MANIFEST_TYPE}
    status, headers, body = curl(stack, "GET", "/v2/proxy/pulled/manifests/1", "reader",
                                 headers=accept)  # fmt: skip
    assert status == 200, body
    assert headers["docker-content-digest"] == seeded.manifest_digest
    layer = json.loads(body)["layers"][0]["digest"]
    status, _, blob = curl(stack, "GET", f"/v2/proxy/pulled/blobs/{layer}", "reader")
    assert status == 200
    assert digest_of(blob) == layer
    assert gzip.decompress(blob)  # the layer itself
    status, _, _ = curl(stack, "HEAD", f"/v2/proxy/pulled/blobs/{layer}", "reader")
    assert status == 200


def push_blob(stack: Stack, repository: str, data: bytes, user: str) -> str:
    """A monolithic upload as distribution takes one: POST for an upload URL, then one PUT with
    the whole blob and its digest. Returns the digest."""
    status, headers, body = curl(stack, "POST", f"/v2/{repository}/blobs/uploads/", user)
    assert status == 202, body
    location = headers["location"]
    digest = digest_of(data)
    separator = "&" if "?" in location else "?"
    status, headers, body = curl(
        stack, "PUT", f"{location}{separator}digest={digest}", user, data=data
    )
    assert status == 201, body
    assert headers["docker-content-digest"] == digest
    return digest


def test_curl_pushes_a_blob_in_one_request(stack: Stack) -> None:
    data = os.urandom(4096)
    digest = push_blob(stack, "curl/app", data, "alice")
    status, _, blob = curl(stack, "GET", f"/v2/curl/app/blobs/{digest}", "alice")
    assert (status, blob) == (200, data)


def test_curl_pushes_a_blob_in_chunks(stack: Stack) -> None:
    chunks = [os.urandom(3000), os.urandom(5000), os.urandom(100)]
    data = b"".join(chunks)
    digest = digest_of(data)
    status, headers, body = curl(stack, "POST", "/v2/curl/chunked/blobs/uploads/", "alice")
    assert status == 202, body
    location = headers["location"]
    offset = 0
    for chunk in chunks:
        status, headers, body = curl(
            stack, "PATCH", location, "alice", data=chunk,
            headers={"Content-Range": f"{offset}-{offset + len(chunk) - 1}"},
        )  # fmt: skip
        assert status == 202, body
        offset += len(chunk)
        location = headers["location"]
        # the upload's status, by GET on its URL: pull is enough
        status, headers_now, _ = curl(stack, "GET", location, "alice")
        assert status == 204
        assert headers_now["range"] == f"0-{offset - 1}"
    separator = "&" if "?" in location else "?"
    status, headers, body = curl(stack, "PUT", f"{location}{separator}digest={digest}", "alice")
    assert status == 201, body
    status, _, blob = curl(stack, "GET", f"/v2/curl/chunked/blobs/{digest}", "reader")
    assert (status, blob) == (200, data)


def test_curl_cancels_an_upload_only_with_the_delete_right(stack: Stack) -> None:
    status, headers, _ = curl(stack, "POST", "/v2/carol/cancel/blobs/uploads/", "carol")
    assert status == 202
    location = headers["location"]
    status, _, body = curl(stack, "DELETE", location, "alice")  # alice: pull and push only
    assert status == 403
    assert errors_of(body) == ["DENIED"]
    status, _, _ = curl(stack, "DELETE", location, "carol")
    assert status == 204


def test_curl_mounts_a_blob_from_another_repository(stack: Stack) -> None:
    digest = push_blob(stack, "curl/source", os.urandom(2048), "alice")
    mount = f"/v2/curl/target/blobs/uploads/?mount={digest}&from=curl/source"
    status, headers, body = curl(stack, "POST", mount, "alice")
    assert status == 201, body
    assert headers["docker-content-digest"] == digest
    # carol may push to carol/* but not pull curl/source: no mount for her
    status, _, body = curl(stack, "POST", f"/v2/carol/t/blobs/uploads/?mount={digest}"
                           "&from=curl/source", "carol")  # fmt: skip
    assert status == 403
    assert errors_of(body) == ["DENIED"]


def test_curl_deletes_only_with_the_delete_right(stack: Stack) -> None:
    digest = push_blob(stack, "carol/app", os.urandom(1024), "carol")
    status, _, body = curl(stack, "DELETE", f"/v2/carol/app/blobs/{digest}", "alice")
    assert status == 403
    assert errors_of(body) == ["DENIED"]
    status, _, body = curl(stack, "DELETE", f"/v2/carol/app/blobs/{digest}", "carol")
    assert status == 202, body
    status, _, _ = curl(stack, "HEAD", f"/v2/carol/app/blobs/{digest}", "carol")
    assert status == 404


def test_a_denied_push_is_a_403_with_a_json_body(stack: Stack) -> None:
    status, headers, body = curl(stack, "POST", "/v2/proxy/denied/blobs/uploads/", "reader")
    assert status == 403
    assert headers["content-type"] == "application/json"
    assert headers["docker-distribution-api-version"] == "registry/2.0"
    assert json.loads(body) == {
        "errors": [
            {
                "code": "DENIED",
                "message": "requested access to the resource is denied",
                "detail": None,
            }
        ]
    }


def test_anonymous_pull_of_a_public_repository_and_not_of_a_private_one(
    stack: Stack, seeded: images.Image
) -> None:
    status, headers, _ = curl(stack, "GET", f"/v2/{PUBLIC}/manifests/1",
                              headers={"Accept": images.MANIFEST_TYPE})  # fmt: skip
    assert status == 200
    assert headers["docker-content-digest"] == seeded.manifest_digest
    status, headers, body = curl(stack, "GET", "/v2/proxy/pulled/manifests/1")
    assert status == 401
    assert headers["www-authenticate"].startswith("Basic ")
    assert errors_of(body) == ["UNAUTHORIZED"]
    # nor may an anonymous client push to the public one
    status, _, _ = curl(stack, "POST", f"/v2/{PUBLIC}/blobs/uploads/")
    assert status == 401


def test_the_catalog_only_with_its_grant(stack: Stack, seeded: images.Image) -> None:
    status, _, body = curl(stack, "GET", "/v2/_catalog", "admin")
    assert status == 200, body
    assert "proxy/pulled" in json.loads(body)["repositories"]
    status, _, body = curl(stack, "GET", "/v2/_catalog", "alice")
    assert status == 403
    assert errors_of(body) == ["DENIED"]
    status, _, _ = curl(stack, "GET", "/v2/_catalog")
    assert status == 401


def test_a_wrong_password_is_a_basic_challenge_and_is_throttled_like_a_token_login(
    stack: Stack,
) -> None:
    status, headers, body = curl(stack, "GET", "/v2/", "alice", "wrong-password")
    assert status == 401
    assert headers["www-authenticate"].startswith('Basic realm="')
    assert errors_of(body) == ["UNAUTHORIZED"]
    # LOGIN_THROTTLE_BURST (10) wrong passwords for one user from one address, then 429,
    # here and at the token endpoint alike: they count the same failures.
    statuses = [curl(stack, "GET", "/v2/", "mallory", f"guess-{i}")[0] for i in range(10)]
    assert statuses == [401] * 10
    status, headers, body = curl(stack, "GET", "/v2/proxy/pulled/tags/list", "mallory", "guess")
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert errors_of(body) == ["TOOMANYREQUESTS"]
    raw = base64.b64encode(b"mallory:another-guess").decode()
    status, _, _ = http("GET", f"{stack.realm}?service=e2e-registry",
                        {"Authorization": f"Basic {raw}"})  # fmt: skip
    assert status == 429


def test_bearer_tokens_pass_through_untouched(stack: Stack, seeded: images.Image) -> None:
    """A client that fetched a token at /v2/token, as in token mode, uses the same endpoint."""
    token = fetch_token(stack, "scope=repository:proxy/pulled:pull", user="reader")
    status, headers, _ = http(
        "GET", f"{stack.url}/v2/proxy/pulled/manifests/1",
        {"Authorization": f"Bearer {token}", "Accept": images.MANIFEST_TYPE},
    )  # fmt: skip
    assert status == 200
    assert headers["Docker-Content-Digest"] == seeded.manifest_digest
    # The registry checks it: a token without push gets the registry's own Bearer challenge.
    status, headers, _ = http(
        "POST", f"{stack.url}/v2/proxy/pulled/blobs/uploads/", {"Authorization": f"Bearer {token}"}
    )
    assert status == 401
    assert headers["Www-Authenticate"].startswith("Bearer ")
    assert 'error="insufficient_scope"' in headers["Www-Authenticate"]
    assert registry_tags(stack, "proxy/pulled") == ["1"]
    # A large token (60 scopes, about 6 kB) passes through as well.
    many = "&".join(f"scope=repository:proxy/r{i:03d}:pull" for i in range(59))
    token = fetch_token(stack, f"{many}&scope=repository:proxy/pulled:pull", user="reader")
    assert len(token) > 4000
    status, _, _ = http(
        "GET", f"{stack.url}/v2/proxy/pulled/tags/list", {"Authorization": f"Bearer {token}"}
    )
    assert status == 200


# --- real clients -------------------------------------------------------------------------------


def test_skopeo_copies_with_dest_creds_and_src_creds(
    stack: Stack, seeded: images.Image, tmp_path: Path
) -> None:
    skopeo = Skopeo(tmp_path / "skopeo")
    skopeo.push(seeded, f"{stack.host}/skopeo/proxied:1")  # --dest-creds alice
    assert registry_tags(stack, "skopeo/proxied") == ["1"]
    layout = tmp_path / "pulled"
    result = skopeo(
        "copy", "--src-tls-verify=false", "--src-creds", f"reader:{password('reader')}",
        f"docker://{stack.host}/skopeo/proxied:1", f"oci:{layout}:pulled",
    )  # fmt: skip
    assert result.rc == 0, result
    assert images.manifest_digest(layout, "pulled") == seeded.manifest_digest
    assert images.read_text(layout, "pulled") == seeded.text
    denied = skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", f"reader:{password('reader')}",
        seeded.reference, f"docker://{stack.host}/skopeo/denied:1",
    )  # fmt: skip
    assert denied.rc != 0
    assert "denied" in denied.output


def test_podman_pushes_and_pulls(
    stack: Stack, seeded: images.Image, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A short directory: podman refuses a runroot longer than 50 characters.
    tmp_path = tmp_path_factory.mktemp("podman")
    podman = Podman(tmp_path, stack.host)
    login = podman("login", "-u", "alice", "-p", password("alice"), stack.host)
    assert login.rc == 0, login
    pulled = podman("pull", seeded.reference)
    assert pulled.rc == 0, pulled
    image_id = pulled.output.strip().splitlines()[-1]
    assert podman("tag", image_id, f"{stack.host}/podman/proxied:1").rc == 0
    pushed = podman("push", f"{stack.host}/podman/proxied:1")
    assert pushed.rc == 0, pushed
    assert registry_tags(stack, "podman/proxied") == ["1"]
    assert podman("rmi", "-a", "-f").rc == 0
    fetched = podman("pull", "--creds", f"reader:{password('reader')}",
                     f"{stack.host}/podman/proxied:1")  # fmt: skip
    assert fetched.rc == 0, fetched
    wrong = podman("login", "--authfile", str(tmp_path / "bad.json"), "-u", "alice", "-p",
                   "wrong-password", stack.host)  # fmt: skip
    assert wrong.rc != 0
    assert "invalid username/password" in wrong.output


def test_docker_logs_in_pushes_and_pulls(
    stack: Stack, seeded: images.Image, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A short directory: containerd's socket path must fit a unix socket's 108 bytes.
    tmp_path = tmp_path_factory.mktemp("dockerd")
    archive = Skopeo(tmp_path / "skopeo").convert(
        seeded, "docker-archive", tmp_path / "image.tar", "e2e/proxied:1"
    )
    with running_dockerd(tmp_path / "dockerd", stack.host) as dockerd:
        config = tmp_path / "docker-config"
        wrong = dockerd.docker(config, "login", "-u", "alice", "--password-stdin", stack.host,
                               stdin="wrong-password")  # fmt: skip
        assert wrong.rc != 0
        # docker's Basic login: "login attempt to http://HOST/v2/ failed with status: 401
        # Unauthorized" (a token login says "unauthorized: incorrect username or password").
        assert "401 Unauthorized" in wrong.output
        login = dockerd.docker(config, "login", "-u", "alice", "--password-stdin", stack.host,
                               stdin=password("alice"))  # fmt: skip
        assert login.rc == 0, login
        assert "Login Succeeded" in login.output
        assert dockerd.docker(config, "load", "-i", str(archive)).rc == 0
        remote = f"{stack.host}/docker/proxied:1"
        assert dockerd.docker(config, "tag", "e2e/proxied:1", remote).rc == 0
        pushed = dockerd.docker(config, "push", remote)
        assert pushed.rc == 0, pushed
        assert registry_tags(stack, "docker/proxied") == ["1"]
        assert dockerd.docker(config, "rmi", remote, "e2e/proxied:1").rc == 0
        pulled = dockerd.docker(config, "pull", remote)
        assert pulled.rc == 0, pulled
        assert seeded.manifest_digest in pulled.output or "Downloaded" in pulled.output
        denied_config = tmp_path / "reader-config"
        reader = dockerd.docker(denied_config, "login", "-u", "reader", "--password-stdin",
                                stack.host, stdin=password("reader"))  # fmt: skip
        assert reader.rc == 0, reader
        denied_remote = f"{stack.host}/docker/denied:1"
        assert dockerd.docker(denied_config, "tag", remote, denied_remote).rc == 0
        denied = dockerd.docker(denied_config, "push", denied_remote)
        assert denied.rc != 0
        assert "denied" in denied.output


def test_ctr_pushes_and_pulls(
    stack: Stack, seeded: images.Image, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp_path = tmp_path_factory.mktemp("ctr")  # short: a unix socket's path lives under it
    archive = Skopeo(tmp_path / "skopeo").convert(seeded, "oci-archive", tmp_path / "oci.tar", "1")
    with running_containerd(tmp_path / "containerd") as containerd:
        name = f"{stack.host}/ctr/proxied"
        imported = containerd.ctr("images", "import", "--base-name", name, "--digests",
                                  str(archive))  # fmt: skip
        assert imported.rc == 0, imported
        pushed = containerd.ctr("images", "push", "--plain-http", "--user",
                                f"alice:{password('alice')}", f"{name}:1")  # fmt: skip
        assert pushed.rc == 0, pushed
        assert registry_tags(stack, "ctr/proxied") == ["1"]
        assert containerd.ctr("images", "rm", f"{name}:1").rc == 0
        pulled = containerd.ctr("images", "pull", "--plain-http", "--user",
                                f"reader:{password('reader')}", f"{name}:1")  # fmt: skip
        assert pulled.rc == 0, pulled
        assert seeded.layer_digest in containerd.ctr("content", "ls", "-q").output.split()
