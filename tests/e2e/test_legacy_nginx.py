"""Behind the nginx config of the original service, which deployments keep when they upgrade.

Its token location does ``include uwsgi_params;`` without ``uwsgi_param HTTP_TRANSFER_ENCODING
"";``: nginx de-chunks a chunked body and sends its CONTENT_LENGTH, yet still forwards
``Transfer-Encoding: chunked``. containers/image (skopeo, podman) sends its refresh grant
chunked, so the service must read such a body by its length.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from auth_service.stack.main import Stack

from . import images
from .clients import Skopeo, access_log
from .conftest import SERVICE, basic_auth, http, password, running_stack

REPOSITORY = "legacy/app"


class LegacyNginxStack(Stack):
    """The stack, its site config stripped of the lines that blank HTTP_TRANSFER_ENCODING."""

    def write_configs(self) -> None:
        super().write_configs()
        site = self.state_dir / "site.conf"
        text, removed = re.subn(
            r'(?m)^[ \t]*uwsgi_param HTTP_TRANSFER_ENCODING "";[^\n]*\n', "", site.read_text()
        )
        assert removed >= 2, "the template no longer blanks HTTP_TRANSFER_ENCODING: update this"
        assert "HTTP_TRANSFER_ENCODING" not in text
        site.write_text(text)


@pytest.fixture(scope="module")
def legacy_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("legacy-nginx"), kind=LegacyNginxStack) as stack:
        yield stack


@pytest.fixture(scope="module")
def pushed(legacy_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``legacy/app:1`` in the registry (pushed with a password: GET, no body)."""
    directory = tmp_path_factory.mktemp("legacy-image")
    image = images.build_image(directory / "oci", "1", "legacy nginx\n")
    reference = f"{legacy_stack.host}/{REPOSITORY}:1"
    Skopeo(directory / "skopeo").push(image, reference)
    return reference


def chunked_post(url: str, *fields: str) -> tuple[int, dict, str]:
    """curl's POST of ``fields`` (NAME=VALUE, form-encoded) with a chunked body: the status, the
    JSON answer, and curl's trace of what it sent."""
    command = ["curl", "-sS", "-v", "-w", "\n%{http_code}", "-H", "Transfer-Encoding: chunked"]
    for field in fields:
        command += ["--data-urlencode", field]
    done = subprocess.run([*command, url], capture_output=True, text=True, timeout=30, check=True)
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body), done.stderr


@pytest.mark.parametrize("path", ["/v2/token", "/auth/token"])
def test_a_chunked_password_grant_gets_its_token(legacy_stack: Stack, path: str) -> None:
    status, answer, sent = chunked_post(
        f"{legacy_stack.url}{path}",
        "grant_type=password",
        "username=alice",
        f"password={password('alice')}",
        f"service={SERVICE}",
        f"scope=repository:{REPOSITORY}:pull,push",
        "client_id=curl",
        "access_type=offline",
    )
    assert "> Transfer-Encoding: chunked" in sent.splitlines()
    assert status == 200, answer
    assert answer["scope"] == f"repository:{REPOSITORY}:pull,push"
    assert answer["refresh_token"]

    status, refreshed, _ = chunked_post(
        f"{legacy_stack.url}{path}",
        "grant_type=refresh_token",
        f"refresh_token={answer['refresh_token']}",
        f"service={SERVICE}",
        f"scope=repository:{REPOSITORY}:pull",
        "client_id=curl",
    )
    assert status == 200, refreshed
    assert refreshed["scope"] == f"repository:{REPOSITORY}:pull"


def test_skopeo_logs_in_and_pulls_with_an_identity_token(
    legacy_stack: Stack, pushed: str, tmp_path: Path
) -> None:
    skopeo = Skopeo(tmp_path / "skopeo")
    login = skopeo(
        "login", "--tls-verify=false", "--authfile", str(skopeo.auth_file),
        "-u", "reader", "-p", password("reader"), legacy_stack.host,
    )  # fmt: skip
    assert login.rc == 0, login
    assert "Login Succeeded" in login.output

    # What `docker login` leaves in an auth file skopeo shares: the user name without its
    # password, and the refresh token it got (GET with offline_token=true) as the identity
    # token. skopeo then sends the refresh grant, chunked, for every token it needs.
    status, _, body = http(
        "GET",
        f"{legacy_stack.realm}?account=reader&client_id=docker&offline_token=true"
        f"&service={SERVICE}",
        basic_auth("reader"),
    )
    assert status == 200, body
    auth = json.loads(skopeo.auth_file.read_text())
    auth["auths"][legacy_stack.host] = {
        "auth": base64.b64encode(b"reader:").decode(),
        "identitytoken": json.loads(body)["refresh_token"],
    }
    skopeo.auth_file.write_text(json.dumps(auth))

    refresh_grants = re.compile(r'"POST /v2/token HTTP/1\.1" (\d{3}) ')
    before = len(access_log(legacy_stack))
    inspected = skopeo("inspect", "--tls-verify=false", f"docker://{pushed}")
    assert inspected.rc == 0, inspected
    assert json.loads(inspected.output)["Name"] == f"{legacy_stack.host}/{REPOSITORY}"
    pulled = skopeo(
        "copy", "--src-tls-verify=false", f"docker://{pushed}", f"oci:{tmp_path / 'pulled'}:1"
    )
    assert pulled.rc == 0, pulled
    assert images.read_text(tmp_path / "pulled", "1") == "legacy nginx\n"

    statuses = [
        match.group(1)
        for line in access_log(legacy_stack)[before:]
        if (match := refresh_grants.search(line))
    ]
    assert statuses and set(statuses) == {"200"}, statuses  # the tokens came from refresh grants
