"""The development bootstrap creates a working configuration, once."""

import io
import json
import re

from auth_service import create_app
from auth_service.atomic import write_atomic
from auth_service.dev import DEV_SERVICE, ensure_dev_config

from . import helpers


def test_dev_config_works_and_is_created_once(tmp_path):
    out = io.StringIO()
    ensure_dev_config(tmp_path, out)
    passwords = dict(re.findall(r"created user '(\w+)' with password (\S+)", out.getvalue()))
    assert set(passwords) == {"alice", "admin"}
    assert (tmp_path / "token.key").stat().st_mode & 0o777 == 0o600

    client = create_app({"CONFIG_DIR": tmp_path}).test_client()
    response = client.get(
        f"/v2/token?service={DEV_SERVICE}&scope=repository:alice/app:push,pull",
        headers=helpers.basic("alice", passwords["alice"]),
    )
    assert response.status_code == 200
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    again = io.StringIO()
    ensure_dev_config(tmp_path, again)
    assert again.getvalue() == ""
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_write_atomic_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "users.json"
    target.write_text("old")
    write_atomic(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["users.json"]


def test_init_only_takes_issuer_and_service_from_the_environment(tmp_path, monkeypatch):
    from auth_service import dev
    from auth_service.settings import load_settings

    monkeypatch.setenv("AUTH_SERVICE_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("AUTH_SERVICE_ISSUER", "compose-issuer")
    monkeypatch.setenv("AUTH_SERVICE_SERVICE", "registry.example.org")
    dev.main(["--init-only"])
    assert set(json.loads((tmp_path / "users.json").read_text())) == {"admin"}
    assert json.loads((tmp_path / "repositories.json").read_text())["repositories"] == []
    settings = load_settings(tmp_path, environ={})
    assert settings.issuer == "compose-issuer"
    assert settings.services == ("registry.example.org",)
    assert settings.cert_path.exists() and settings.key_path.exists()
