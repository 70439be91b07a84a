"""The operator's command line, run as an operator would (through click), on a config dir."""

import json
import stat

from click.testing import CliRunner

from auth_service.cli.main import cli

from ..tokens.test_refresh import login_refresh_token, refresh


def run(config_dir, *args, input=None, env=None):
    """Run ``auth-service ARGS`` on ``config_dir``: (exit code, stdout and stderr)."""
    result = CliRunner().invoke(
        cli,
        [str(arg) for arg in args],
        input=input,
        env={"AUTH_SERVICE_CONFIG_DIR": str(config_dir), **(env or {})},
    )
    return result.exit_code, result.output


def test_revoke_a_token(make_app, config_dir):
    client = make_app().test_client()
    token, other = login_refresh_token(client), login_refresh_token(client)
    code, output = run(config_dir, "tokens", "revoke", token)
    assert code == 0 and "revoked refresh token" in output
    fresh = make_app().test_client()  # a new process would read the file at start-up
    assert refresh(fresh, token).status_code == 401
    assert refresh(fresh, other).status_code == 200


def test_revoke_by_id(make_app, config_dir):
    code, _ = run(config_dir, "tokens", "revoke", "some-token-id")
    assert code == 0
    document = json.loads((config_dir / "revocations.json").read_text())
    assert "some-token-id" in document["tokens"]


def test_revoke_user(make_app, config_dir):
    client = make_app().test_client()
    token = login_refresh_token(client)
    code, output = run(config_dir, "tokens", "revoke-user", "alice")
    assert code == 0 and "alice" in output
    fresh = make_app().test_client()
    assert refresh(fresh, token).status_code == 401
    assert refresh(fresh, login_refresh_token(fresh, "bob")).status_code == 200


def test_revocations_json_is_created_private_and_keeps_the_mode_it_is_given(config_dir):
    revocations = config_dir / "revocations.json"
    assert run(config_dir, "tokens", "revoke", "first-id")[0] == 0
    assert stat.S_IMODE(revocations.stat().st_mode) == 0o600
    revocations.chmod(0o640)  # an operator's choice, say for a group that reads it
    assert run(config_dir, "tokens", "revoke-user", "alice")[0] == 0
    assert stat.S_IMODE(revocations.stat().st_mode) == 0o640
    assert "first-id" in json.loads(revocations.read_text())["tokens"]


def test_revoke_user_prints_the_name_escaped(config_dir):
    code, output = run(config_dir, "tokens", "revoke-user", "eve\x1b[2J\u2028")
    assert code == 0, output
    assert "\x1b" not in output and "\u2028" not in output
    assert "'eve\\x1b[2J\\u2028'" in output


def test_forged_token_is_not_revoked(config_dir):
    code, output = run(config_dir, "tokens", "revoke", "rt1.forged.token")
    assert code != 0 and "not revoked" in output
    assert not (config_dir / "revocations.json").exists()


def test_bad_configuration_is_one_line(tmp_path):
    code, output = run(tmp_path, "tokens", "revoke-user", "alice")
    assert code != 0
    assert output.strip() == f"Error: configuration error: {tmp_path}/config.py: file not found"


def test_running_service_sees_revocation_after_reload(make_app, config_dir, monkeypatch):
    client = make_app().test_client()
    token = login_refresh_token(client)
    assert refresh(client, token).status_code == 200
    run(config_dir, "tokens", "revoke", token)
    service = client.application.extensions["auth_service"]
    monkeypatch.setattr(service.revocations, "_next_check", 0)  # don't wait a second
    assert refresh(client, token).status_code == 401


def test_explain_is_part_of_the_command_line(config_dir):
    code, output = run(config_dir, "explain", "bob", "repository:team/app:pull,push")
    assert code == 0, output
    assert output.strip() == 'repository:team/app: pull  (users.json: bob: "team/app")'
