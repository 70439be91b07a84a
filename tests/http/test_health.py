"""GET /health: config loaded, key usable, last reload good; 200 or 503."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from auth_service.files import live_config
from auth_service.http import EXTENSION
from auth_service.records import metrics

from .. import helpers


def reloads(result: str) -> float:
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == "auth_config_reloads_total" and sample.labels["result"] == result:
                return sample.value
    return 0.0


@pytest.fixture
def reloading_app(make_app, monkeypatch):
    """An app whose access files are looked at on every request, not once a second."""
    monkeypatch.setattr(live_config, "RELOAD_CHECK_SECONDS", 0)
    return make_app()


def health(client) -> tuple[int, dict]:
    response = client.get("/health")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.mimetype == "application/json"
    return response.status_code, response.get_json()


def test_a_good_app_is_healthy(client):
    status, body = health(client)
    assert status == 200
    assert body == {
        "status": "ok",
        "checks": {"config_loaded": True, "key_usable": True, "last_reload_ok": True},
        "problems": [],
    }


def test_a_broken_edit_fails_health_until_it_is_fixed(reloading_app, config_dir):
    client = reloading_app.test_client()
    users = config_dir / "users.json"
    good = users.read_bytes()
    failed, ok = reloads("failed"), reloads("ok")

    users.write_text(json.dumps({"bob": {"pass_hash": "not-bcrypt"}}))
    helpers.bump_mtime(users)
    status, body = health(client)
    assert status == 503
    assert body["status"] == "failing"
    assert body["checks"] == {"config_loaded": True, "key_usable": True, "last_reload_ok": False}
    assert body["problems"] == [
        "the last reload of users.json, repositories.json or groups.json failed; "
        "the last good version is serving"
    ]
    assert "bob" not in json.dumps(body)  # the log names the user; the endpoint doesn't
    assert reloads("failed") == failed + 1
    # The last good configuration keeps serving.
    token = client.get(
        f"/v2/token?service={helpers.SERVICE}&scope=repository:team/app:pull",
        headers=helpers.basic("alice", helpers.PASSWORDS["alice"]),
    )
    assert token.status_code == 200
    # Asked again, the same broken version is neither reloaded nor counted again.
    assert health(client)[0] == 503
    assert reloads("failed") == failed + 1

    users.write_bytes(good)
    helpers.bump_mtime(users)
    helpers.bump_mtime(users)
    status, body = health(client)
    assert status == 200, body
    assert body["status"] == "ok"
    assert reloads("ok") == ok + 1


def test_a_broken_revocations_file_fails_health(make_app, config_dir):
    app = make_app()
    revocations = app.extensions[EXTENSION].revocations
    client = app.test_client()
    (config_dir / "revocations.json").write_text("{not json")
    revocations.check_at_next_call()  # don't wait a second
    status, body = health(client)
    assert status == 503
    assert body["checks"]["last_reload_ok"] is False
    assert "revocations.json" in body["problems"][0]


def test_an_expired_certificate_fails_health(app, signing_cert):
    signer = app.extensions[EXTENSION].signer
    expired = signing_cert.not_valid_after_utc.timestamp() + 1
    signer._clock = lambda: expired
    status, body = health(app.test_client())
    assert status == 503
    assert body["checks"]["key_usable"] is False
    assert body["problems"] == [f"the certificate expired on {signing_cert.not_valid_after_utc}"]


def test_a_key_that_cannot_sign_fails_health(app, monkeypatch):
    signer = app.extensions[EXTENSION].signer

    def broken(*args, **kwargs):
        raise ValueError("the HSM is gone")

    monkeypatch.setattr(signer, "issue", broken)
    status, body = health(app.test_client())
    assert status == 503
    assert body["checks"]["key_usable"] is False
    assert body["problems"] == ["the key cannot sign: the HSM is gone"]


def test_a_key_whose_tokens_do_not_verify_fails_health(app, monkeypatch):
    signer = app.extensions[EXTENSION].signer
    good_issue = signer.issue

    def corrupted(*args, **kwargs):
        issued = good_issue(*args, **kwargs)
        header, payload, signature = issued.token.split(".")
        flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
        return type(issued)(f"{header}.{payload}.{flipped}", issued.issued_at, issued.expires_in)

    monkeypatch.setattr(signer, "issue", corrupted)
    status, body = health(app.test_client())
    assert status == 503
    assert body["checks"]["key_usable"] is False


def test_health_is_get_only(client):
    assert client.post("/health").status_code == 405
    assert client.post("/metrics").status_code == 405
