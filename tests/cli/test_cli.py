"""The operator's command line, run as an operator would (through click), on a config dir."""

import json
import stat
from importlib.metadata import version

import pytest
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


def test_bad_configuration_is_one_line(config_dir):
    (config_dir / "token.key").unlink()
    code, output = run(config_dir, "tokens", "revoke-user", "alice")
    assert code == 1
    assert output.startswith(f"Error: configuration error: {config_dir}/token.key: ")
    assert len(output.splitlines()) == 1


NO_CONFIGURATION = (
    "Error: {}: no configuration here (no config.py); give --config-dir or set "
    "AUTH_SERVICE_CONFIG_DIR, or create one with `auth-service init`\n"
)


@pytest.mark.parametrize(
    "command",
    [
        ["users", "list"],
        ["users", "list", "--json"],
        ["users", "show", "alice"],
        ["users", "add", "carol", "--password-stdin"],
        ["users", "set", "alice", "--catalog"],
        ["users", "passwd", "alice", "--password-stdin"],
        ["users", "remove", "alice"],
        ["tokens", "revoke", "some-id"],
        ["tokens", "revoke-user", "alice"],
        ["explain", "alice", "repository:team/app:pull"],
        ["config", "check"],
    ],
)
def test_a_directory_without_configuration_is_one_line_and_exit_1(tmp_path, command):
    """A mistyped directory: never an empty list, nor a users.json made in the wrong place."""
    wrong = tmp_path / "confg"
    wrong.mkdir()
    code, output = run(wrong, *command, input="pw\n")
    assert (code, output) == (1, NO_CONFIGURATION.format(wrong))
    assert list(wrong.iterdir()) == []


def test_config_dir_option_wins_over_the_environment(tmp_path, config_dir):
    code, output = run(tmp_path, "--config-dir", config_dir, "users", "list")
    assert code == 0 and output.startswith("alice  groups: ")
    code, output = run(config_dir, "--config-dir", tmp_path, "users", "list")
    assert (code, output) == (1, NO_CONFIGURATION.format(tmp_path))


def test_help_shows_the_config_dir_in_use_and_no_flask_options(tmp_path, config_dir):
    code, output = run(config_dir, "--help")
    assert code == 0, output
    flat = " ".join(output.split())  # the help is wrapped to the terminal's width
    assert "--config-dir DIRECTORY" in flat
    assert "[env var: AUTH_SERVICE_CONFIG_DIR; default: config]" in flat
    assert f"In use: {config_dir}\n" in output  # on one line: a path to copy
    for flask_option in ("--env-file", "--app", "--debug"):
        assert flask_option not in output
    for command in ("init", "users", "keys", "config", "explain", "tokens", "dev"):
        assert f"\n  {command} " in output
    code, output = run(config_dir, "--config-dir", tmp_path / "elsewhere", "--help")
    assert f"In use: {tmp_path}/elsewhere (no config.py there)\n" in output


def test_version_is_the_package_version():
    code, output = run("unused", "--version")
    assert (code, output) == (0, f"auth-service, version {version('registry-token-service')}\n")
    assert "Flask" not in output and "Python" not in output


def test_running_service_sees_revocation_after_reload(make_app, config_dir, monkeypatch):
    client = make_app().test_client()
    token = login_refresh_token(client)
    assert refresh(client, token).status_code == 200
    run(config_dir, "tokens", "revoke", token)
    service = client.application.extensions["auth_service"]
    service.revocations.check_at_next_call()  # don't wait a second
    assert refresh(client, token).status_code == 401


def test_explain_is_part_of_the_command_line(config_dir):
    code, output = run(config_dir, "explain", "bob", "repository:team/app:pull,push")
    assert code == 0, output
    assert output.strip() == 'repository:team/app: pull  (users.json: bob: "team/app")'


def test_config_check_json_has_the_findings_of_the_lines(config_dir):
    """The test directory's hashes have a weak cost (fast tests): problems to report."""
    code, text = run(config_dir, "config", "check")
    assert code == 1
    code, output = run(config_dir, "config", "check", "--json")
    assert code == 1
    report = json.loads(output)  # nothing else on the output: no "Error:" line
    assert report["ok"] is False
    assert report["problems"] == sum(finding["problem"] for finding in report["findings"]) > 0
    shown = [
        f["message"] if f["problem"] else f"warning: {f['message']}" for f in report["findings"]
    ]
    assert shown == text.splitlines()[:-1]
    assert text.splitlines()[-1] == f"Error: {report['problems']} problems found"
