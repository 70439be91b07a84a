"""Rehash on login: a users.json of mixed costs converges, and nothing else in it changes."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from auth_service.files.users import bcrypt_cost, load_users
from auth_service.passwords import rehash

from .. import helpers

REPO = Path(__file__).resolve().parents[2]
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "chloé": "chloé-pw", "dave": "dave-pw"}
COSTS = {"alice": 4, "bob": 5, "chloé": 5, "dave": 6}  # bcrypt's cheapest: this is not timing
# A layout json.dumps would not write: lists on one line, tabs, keys in an unusual order, and
# non-ASCII left as it is. A rehash must keep all of it.
LAYOUT = """{
\t"alice": {"pass_hash": "%(alice)s",
\t\t"repositories": {"team/app": ["pull", "push"], "*": ["pull"]}},
\t"bob": {"repositories": {"team/app": ["pull"]}, "pass_hash": "%(bob)s"},
\t"chloé": {"pass_hash": "%(chloé)s", "repositories": {"team/app": ["pull"]}},
\t"dave": {"pass_hash": "%(dave)s", "repositories": {}, "catalog": true}
}
"""


@pytest.fixture(autouse=True)
def _warn_afresh() -> None:
    rehash._unwritable_warned.clear()  # it warns once per process: each test from none given


def _users_file(directory: Path) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / "users.json"
    hashes = {name: helpers.hash_password(PASSWORDS[name], COSTS[name]) for name in PASSWORDS}
    path.write_text(LAYOUT % hashes, encoding="utf-8")
    return path


def _hash_of(path: Path, name: str) -> str:
    return json.loads(path.read_text(encoding="utf-8"))[name]["pass_hash"]


def _log_in(path: Path, name: str) -> None:
    """A successful login as the service does it: check, then rehash if the cost differs."""
    users = load_users(path)
    user = users.verify_password(name, PASSWORDS[name])
    assert user is not None
    cost = users.rehash_cost(user)
    if cost is not None:
        written = rehash.update_hash(path, name, user.pass_hash, PASSWORDS[name], cost)
        assert written is not None and written.decode() == _hash_of(path, name)


def test_a_mixed_file_converges_on_the_most_common_cost_and_keeps_its_layout(
    tmp_path: Path,
) -> None:
    path = _users_file(tmp_path)
    before = path.read_text(encoding="utf-8")
    users = load_users(path)
    assert users.target_cost == 5
    assert {name: users.rehash_cost(users.users[name]) for name in PASSWORDS} == {
        "alice": 5,
        "bob": None,
        "chloé": None,
        "dave": 5,
    }
    for name in PASSWORDS:
        _log_in(path, name)
    after = path.read_text(encoding="utf-8")
    users = load_users(path)
    assert {bcrypt_cost(user.pass_hash) for user in users.users.values()} == {5}
    assert all(users.rehash_cost(user) is None for user in users.users.values())
    for name, password in PASSWORDS.items():
        assert users.verify_password(name, password) is not None
    # Only the two hashes changed, each where it stood.
    expected = before
    for name in ("alice", "dave"):
        expected = expected.replace(_hash_of_text(before, name), _hash_of(path, name))
    assert after == expected != before


def _hash_of_text(text: str, name: str) -> str:
    return json.loads(text)[name]["pass_hash"]


def test_an_explicit_target_cost_converges_every_hash_to_it(tmp_path: Path) -> None:
    path = _users_file(tmp_path)
    for name in PASSWORDS:
        users = load_users(path, 6)
        user = users.verify_password(name, PASSWORDS[name])
        assert user is not None
        cost = users.rehash_cost(user)
        assert cost == (None if COSTS[name] == 6 else 6)
        if cost is not None:
            written = rehash.update_hash(path, name, user.pass_hash, PASSWORDS[name], cost)
            assert written is not None
    assert {bcrypt_cost(u.pass_hash) for u in load_users(path).users.values()} == {6}


def test_a_hash_changed_meanwhile_is_never_overwritten(tmp_path: Path) -> None:
    """Compare-and-swap: a `users passwd` between the check and the rehash wins."""
    path = _users_file(tmp_path)
    checked = _hash_of(path, "alice")
    changed = path.read_text(encoding="utf-8").replace(checked, helpers.hash_password("new-pw", 4))
    path.write_text(changed, encoding="utf-8")
    assert rehash.update_hash(path, "alice", checked, "alice-pw", 5) is None
    assert path.read_text(encoding="utf-8") == changed
    # A user removed meanwhile, or a file gone, are left alone too.
    assert rehash.update_hash(path, "nobody", checked, "alice-pw", 5) is None
    assert path.read_text(encoding="utf-8") == changed
    path.unlink()
    assert rehash.update_hash(path, "alice", checked, "alice-pw", 5) is None
    assert not path.exists()


def test_the_file_keeps_its_mode(tmp_path: Path) -> None:
    path = _users_file(tmp_path)
    path.chmod(0o640)  # say, readable by the service's group
    assert rehash.update_hash(path, "alice", _hash_of(path, "alice"), "alice-pw", 5) is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert bcrypt.checkpw(b"alice-pw", _hash_of(path, "alice").encode())


def test_a_hash_written_with_escapes_is_still_replaced(tmp_path: Path) -> None:
    """JSON may escape any character: the in-place edit can't find the hash's text then."""
    path = _users_file(tmp_path)
    old = _hash_of(path, "alice")
    escaped = path.read_text(encoding="utf-8").replace(f'"{old}"', f'"\\u0024{old[1:]}"')
    path.write_text(escaped, encoding="utf-8")
    assert rehash.update_hash(path, "alice", old, "alice-pw", 5) is not None
    document = json.loads(path.read_text(encoding="utf-8"))
    assert bcrypt_cost(document["alice"]["pass_hash"].encode()) == 5
    assert {k: v for k, v in document.items() if k != "alice"} == {
        k: v for k, v in json.loads(escaped).items() if k != "alice"
    }


def test_a_broken_file_is_left_alone_without_raising(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "users.json"
    path.write_text('{"alice": {"pass_hash": ', encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="auth_service"):
        assert rehash.update_hash(path, "alice", "$2b$04$" + "." * 53, "alice-pw", 5) is None
    assert path.read_text(encoding="utf-8") == '{"alice": {"pass_hash": '
    assert "alice-pw" not in caplog.text and "rehash" in caplog.text


READ_ONLY_CHILD = """
import json, logging, sys
from auth_service.passwords import rehash
messages = []
class Keep(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())
logging.getLogger("auth_service").addHandler(Keep())
path, old = sys.argv[1], sys.argv[2]
results = [rehash.update_hash(path, "alice", old, "alice-pw", 5) is None for _ in range(3)]
print(json.dumps({"results": results, "messages": messages}))
"""


def _run_with_read_only_directory(directory: Path, *args: str, code: str = READ_ONLY_CHILD) -> Any:
    """Run ``code`` (READ_ONLY_CHILD) with ``directory`` read-only, as a ConfigMap or Secret
    mount is; what it prints, decoded from JSON."""
    child = [sys.executable, "-c", code, *args]
    if os.geteuid() == 0:
        # Root writes through file modes: mount the directory read-only in a mount namespace
        # of the child's own.
        command = ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"']
        command += [str(directory), *child]
    else:
        directory.chmod(0o555)
        command = child
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    finally:
        directory.chmod(0o755)
    if done.returncode != 0 and "mount" in done.stderr:
        pytest.skip(f"no read-only mount here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_read_only_directory_warns_once_and_never_raises(tmp_path: Path) -> None:
    path = _users_file(tmp_path / "config")
    before = path.read_text(encoding="utf-8")
    outcome = _run_with_read_only_directory(path.parent, str(path), _hash_of(path, "alice"))
    assert outcome["results"] == [True, True, True]  # nothing written, nothing raised
    assert len(outcome["messages"]) == 1
    assert "can't rehash" in outcome["messages"][0] and "alice-pw" not in outcome["messages"][0]
    assert path.read_text(encoding="utf-8") == before


# Logins through the app, with a target cost other than the hashes' and no credential cache:
# each login is a bcrypt check that wants a rehash.
READ_ONLY_LOGINS_CHILD = """
import base64, json, logging, sys
import bcrypt
from auth_service import create_app
messages = []
class Keep(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())
logging.getLogger("auth_service").addHandler(Keep())
app = create_app({"CONFIG_DIR": sys.argv[1], "BCRYPT_COST": 5, "CREDENTIAL_CACHE_SECONDS": 0})
hashes_made, hashpw = [], bcrypt.hashpw
def counted(*args):
    hashes_made.append(1)
    return hashpw(*args)
bcrypt.hashpw = counted
client = app.test_client()
basic = "Basic " + base64.b64encode(b"alice:alice-pw").decode()
statuses = [
    client.get("/v2/token?service=registry.test", headers={"Authorization": basic}).status_code
    for _ in range(3)
]
warnings = [m for m in messages if "can't rehash" in m]
print(json.dumps({"statuses": statuses, "hashes": len(hashes_made), "warnings": warnings}))
"""


def test_a_read_only_config_directory_costs_logins_no_error_and_no_bcrypt_hash(
    config_dir: Path,
) -> None:
    """Kubernetes mounts users.json read-only: a login is still 200, logged once, and no hash
    is made only to be thrown away (one more bcrypt hash per login, for nothing)."""
    outcome = _run_with_read_only_directory(
        config_dir, str(config_dir), code=READ_ONLY_LOGINS_CHILD
    )
    assert outcome["statuses"] == [200, 200, 200]
    assert outcome["hashes"] == 0
    assert len(outcome["warnings"]) == 1


def _users_json_hash(config_dir: Path, name: str) -> str:
    return json.loads((config_dir / "users.json").read_text())[name]["pass_hash"]


@pytest.mark.parametrize(("offline", "rehashed"), [("false", True), ("true", False)])
def test_a_login_through_the_endpoint_rehashes_unless_it_gets_a_refresh_token(
    config_dir: Path, make_app: Any, offline: str, rehashed: bool
) -> None:
    """The refresh token is bound to the hash checked: a rehash would void it at once."""
    before = _users_json_hash(config_dir, "alice")
    target = bcrypt_cost(before.encode()) + 1
    client = make_app(BCRYPT_COST=target).test_client()
    response = client.get(
        f"/v2/token?service={helpers.SERVICE}&offline_token={offline}",
        headers=helpers.basic("alice", helpers.PASSWORDS["alice"]),
    )
    assert response.status_code == 200
    after = _users_json_hash(config_dir, "alice")
    assert (after != before) is rehashed
    assert bcrypt_cost(after.encode()) == (target if rehashed else bcrypt_cost(before.encode()))
    assert bcrypt.checkpw(helpers.PASSWORDS["alice"].encode(), after.encode())


def test_a_user_who_gets_no_refresh_token_is_rehashed_even_by_docker_login(
    config_dir: Path, make_app: Any
) -> None:
    users = json.loads((config_dir / "users.json").read_text())
    users["alice"]["refresh_tokens"] = False
    helpers.write_json(config_dir / "users.json", users)
    before = _users_json_hash(config_dir, "alice")
    client = make_app(BCRYPT_COST=bcrypt_cost(before.encode()) + 1).test_client()
    response = client.get(
        f"/v2/token?service={helpers.SERVICE}&offline_token=true",
        headers=helpers.basic("alice", helpers.PASSWORDS["alice"]),
    )
    assert response.status_code == 200
    assert "refresh_token" not in response.get_json()
    assert _users_json_hash(config_dir, "alice") != before
