"""``auth-service init`` and ``dev`` create a working configuration, once."""

import json
import os
import re
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from auth_service import create_app
from auth_service.cli.dev import create_example_config
from auth_service.cli.init import DEV_SERVICE
from auth_service.files.atomic import locked_update, write_atomic
from auth_service.files.check import check_config
from auth_service.files.users import load_users

from .. import helpers
from .test_cli import run

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def load_certificate_cn(path):
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def mode_of(path):
    return stat.S_IMODE(path.stat().st_mode)


def another_group():
    """A group id other than ours that this process may give a file, or None."""
    others = [gid for gid in os.getgroups() if gid != os.getegid()]
    if others:
        return others[0]
    return 4242 if os.geteuid() == 0 else None  # root may give any group


def test_dev_config_works_and_is_created_once(tmp_path, capsys):
    create_example_config(tmp_path)
    out = capsys.readouterr().out
    passwords = dict(re.findall(r"created user '(\w+)' with password (\S+)", out))
    assert set(passwords) == {"alice", "admin"}
    assert (tmp_path / "token.key").stat().st_mode & 0o777 == 0o600

    client = create_app({"CONFIG_DIR": tmp_path}).test_client()
    response = client.get(
        f"/v2/token?service={DEV_SERVICE}&scope=repository:alice/app:push,pull",
        headers=helpers.basic("alice", passwords["alice"]),
    )
    assert response.status_code == 200
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    create_example_config(tmp_path)
    assert capsys.readouterr().out == ""
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_write_atomic_creates_private_files_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "users.json"
    write_atomic(target, b"old")
    assert mode_of(target) == 0o600
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert mode_of(target) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["users.json"]


@pytest.mark.parametrize("writer", ["write_atomic", "locked_update"])
def test_a_replaced_file_keeps_its_mode_and_group(tmp_path, writer):
    """An operator's 0640 for a group that must read users.json survives every write."""
    group = another_group()
    if group is None:
        pytest.skip("no second group this user may give a file")
    target = tmp_path / "users.json"
    target.write_text("old")
    os.chown(target, -1, group)
    target.chmod(0o640)
    if writer == "write_atomic":
        write_atomic(target, b"new", mode=0o600)  # the mode is for a new file only
    else:
        locked_update(target, lambda old: old + b" and new")
    assert mode_of(target) == 0o640
    assert target.stat().st_gid == group
    assert target.read_bytes() in (b"new", b"old and new")


@pytest.mark.parametrize("writer", ["write_atomic", "locked_update"])
def test_a_replaced_private_file_loses_what_others_could_read(tmp_path, writer):
    """A users.json or key left world-readable is closed by its next write; its group keeps."""
    target = tmp_path / "users.json"
    target.write_text("old")
    target.chmod(0o644)
    if writer == "write_atomic":
        write_atomic(target, b"new")
    else:
        locked_update(target, lambda old: old + b" and new")
    assert mode_of(target) == 0o640


def test_a_replaced_certificate_stays_readable_by_all(tmp_path):
    target = tmp_path / "token.crt"
    target.write_text("old")
    target.chmod(0o644)
    write_atomic(target, b"new", mode=0o644)
    assert mode_of(target) == 0o644


def test_compose_init_writes_files_the_service_can_read_at_0600():
    """users.json is 0600: fine in compose only because `auth` runs as the uid `init` writes with
    (no other container reads it; nginx only reaches the socket)."""
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    init_uid = services["init"]["user"].split(":")[0]
    assert services["auth"]["user"].split(":")[0] == init_uid
    readers = [
        name
        for name, service in services.items()
        if name not in ("init", "auth")
        for volume in service.get("volumes", [])
        if "AUTH_CONFIG_DIR" in str(volume) and "token.crt" not in str(volume)
    ]
    assert readers == []


def test_init_writes_hashes_and_key_private(tmp_path):
    code, output = run(tmp_path, "init")
    assert code == 0, output
    assert mode_of(tmp_path / "users.json") == 0o600
    assert mode_of(tmp_path / "token.key") == 0o600
    # Public: compose's registry, running as another user, reads the certificate.
    assert mode_of(tmp_path / "token.crt") == 0o644
    assert not [f for f in check_config(tmp_path) if "readable by every user" in f.message]


def test_init_takes_issuer_and_service_from_the_environment(tmp_path):
    from auth_service.files.settings import load_settings

    env = {"AUTH_SERVICE_ISSUER": "compose-issuer", "AUTH_SERVICE_SERVICE": "registry.example.org"}
    code, output = run(tmp_path, "init", env=env)
    assert code == 0, output
    assert set(json.loads((tmp_path / "users.json").read_text())) == {"admin"}
    assert json.loads((tmp_path / "repositories.json").read_text())["repositories"] == []
    settings = load_settings(tmp_path, environ={})
    assert settings.issuer == "compose-issuer"
    assert settings.services == ("registry.example.org",)
    assert settings.cert_path.exists() and settings.key_path.exists()


def test_init_prints_what_it_created_and_the_password_once(tmp_path):
    code, output = run(tmp_path, "init", "--issuer", "tokens.example.org")
    assert code == 0, output
    (password,) = re.findall(r"created user 'admin' with password (\S+) \(shown only now\)", output)
    assert f"created {tmp_path}/config.py" in output
    assert f"created {tmp_path}/token.key and {tmp_path}/token.crt" in output
    assert load_users(tmp_path / "users.json").verify_password("admin", password)
    assert load_certificate_cn(tmp_path / "token.crt") == "tokens.example.org"
    assert check_config(tmp_path) == []
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert run(tmp_path, "init") == (0, "")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_init_keeps_an_existing_key_without_certificate_and_says_so(tmp_path):
    (tmp_path / "token.key").write_bytes(b"the operator's own key")
    code, output = run(tmp_path, "init")
    assert code == 1
    assert output.splitlines()[-1] == (
        f"Error: {tmp_path}/token.key exists but {tmp_path}/token.crt doesn't; "
        "`auth-service keys generate --force` replaces both"
    )
    assert (tmp_path / "token.key").read_bytes() == b"the operator's own key"


def test_dev_creates_the_example_configuration_then_serves_it(tmp_path, monkeypatch):
    served = []
    monkeypatch.setattr("flask.Flask.run", lambda app, **options: served.append(options))
    code, output = run(tmp_path / "dev", "dev", "--port", "5099")
    assert code == 0, output
    assert served == [{"host": "127.0.0.1", "port": 5099}]
    assert set(json.loads((tmp_path / "dev" / "users.json").read_text())) == {"alice", "admin"}
    assert f"http://127.0.0.1:5099/v2/token?service={DEV_SERVICE}&" in output


def test_compose_init_runs_the_command_line_init():
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert services["init"]["command"] == ["auth-service", "init"]
