"""The table of refusals (auth_service.errors.REFUSALS): each row is reached through the app, and
answered, counted and audited exactly as the row says."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from werkzeug.exceptions import ImATeapot, NotFound

from auth_service import errors
from auth_service.errors import REFUSALS, AuditUnavailable, Refusal, Refused, RetryAfter
from auth_service.http import EXTENSION, operations
from auth_service.http.responses import error_document, http_error_response
from auth_service.records import metrics
from auth_service.records.audit import AuditLog

from . import helpers
from .records.test_metrics import value

QUERY = f"/v2/token?service={helpers.SERVICE}&scope=repository:team/app:pull"
FORM = "application/x-www-form-urlencoded"

# What a trigger yields: the refused request, ready to send, with the reason the refusal gives
# and, for a row whose Retry-After is the exception's, the value expected.
Attempt = tuple[Callable[[], Any], str, str | None]
Trigger = Callable[[Callable[..., Any], Any], contextlib.AbstractContextManager[Attempt]]


@contextlib.contextmanager
def bad_request(build: Callable[..., Any], monkeypatch: Any) -> Iterator[Attempt]:
    client = build().test_client()
    yield partial(client.get, "/v2/token?service=evil"), "unknown service 'evil'", None


@contextlib.contextmanager
def bad_credentials(build: Callable[..., Any], monkeypatch: Any) -> Iterator[Attempt]:
    client = build().test_client()
    send = partial(client.get, QUERY, headers=helpers.basic("alice", "wrong"))
    yield send, "incorrect username or password", None


@contextlib.contextmanager
def throttled(build: Callable[..., Any], monkeypatch: Any) -> Iterator[Attempt]:
    client = build(LOGIN_THROTTLE_BURST=1, LOGIN_THROTTLE_PER_MINUTE=2).test_client()
    assert client.get(QUERY, headers=helpers.basic("alice", "wrong")).status_code == 401
    send = partial(client.get, QUERY, headers=helpers.basic("alice", "wrong"))
    yield send, "too many failed logins: try again later", "30"  # a check refills in 30 s


@contextlib.contextmanager
def overloaded(build: Callable[..., Any], monkeypatch: Any) -> Iterator[Attempt]:
    """One bcrypt turn, no waiting room, and the turn held by another login."""
    app = build(BCRYPT_CONCURRENCY=1, BCRYPT_QUEUE=0, LOGIN_THROTTLE_BURST=0)
    started, release = helpers.hold_bcrypt(monkeypatch)
    client = app.test_client()
    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(client.get, QUERY, headers=helpers.basic("alice", "guess"))
        assert started.wait(10)
        send = partial(client.get, QUERY, headers=helpers.basic("bob", "guess"))
        try:
            yield send, "too many logins are waiting to be checked", None
        finally:
            release.set()
            holder.result(10)


@contextlib.contextmanager
def audit_unavailable(build: Callable[..., Any], monkeypatch: Any) -> Iterator[Attempt]:
    reason = "the audit log took no line for 5s"

    def stuck(self: AuditLog, record: dict[str, Any]) -> None:
        raise AuditUnavailable(reason)

    client = build().test_client()
    monkeypatch.setattr(AuditLog, "write", stuck)
    yield partial(client.get, QUERY), reason, None


@contextlib.contextmanager
def body_too_large(build: Callable[..., Any], monkeypatch: Any) -> Iterator[Attempt]:
    client = build().test_client()
    body = {"grant_type": "password", "scope": "x" * (1024 * 1024)}
    send = partial(client.post, "/v2/token", data=body, content_type=FORM)
    yield send, errors.BODY_TOO_LARGE.message, None


def _proxy_decision(client: Any, method: str, uri: str, **kwargs: Any) -> Callable[[], Any]:
    """nginx's auth_request in proxy mode: the original method and URI in uwsgi variables."""
    overrides = {"PROXY_METHOD": method, "PROXY_URI": uri}
    return partial(client.get, "/auth/proxy", environ_overrides=overrides, **kwargs)


@contextlib.contextmanager
def authentication_required(build: Callable[..., Any], monkeypatch: Any) -> Iterator[Attempt]:
    client = build().test_client()
    yield _proxy_decision(client, "GET", "/v2/"), "authentication required", None


@contextlib.contextmanager
def denied(build: Callable[..., Any], monkeypatch: Any) -> Iterator[Attempt]:
    client = build().test_client()
    send = _proxy_decision(
        client, "PUT", "/v2/team/app/manifests/1", headers=helpers.basic("bob", "bob-pw")
    )
    yield send, "not granted: repository:team/app:push", None


@contextlib.contextmanager
def method_not_allowed(build: Callable[..., Any], monkeypatch: Any) -> Iterator[Attempt]:
    client = build().test_client()
    yield partial(client.put, QUERY), "PUT is not allowed here", None


@contextlib.contextmanager
def not_found(build: Callable[..., Any], monkeypatch: Any) -> Iterator[Attempt]:
    client = build().test_client()
    yield partial(client.get, "/v2/tokens"), NotFound.description, None


@contextlib.contextmanager
def internal_error(build: Callable[..., Any], monkeypatch: Any) -> Iterator[Attempt]:
    app = build()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app.extensions[EXTENSION], "grant_token", broken)
    client = app.test_client()
    yield partial(client.get, QUERY), "internal error", None


# One way to reach each row, by its name: a row added to the table without one fails below.
TRIGGERS: dict[str, Trigger] = {
    trigger.__name__: trigger
    for trigger in (
        bad_request,
        bad_credentials,
        throttled,
        overloaded,
        audit_unavailable,
        body_too_large,
        authentication_required,
        denied,
        method_not_allowed,
        not_found,
        internal_error,
    )
}


def _outcome_counts() -> dict[str, float]:
    return {o: value("auth_token_requests_total", outcome=o) for o in metrics.OUTCOMES}


def _audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _expected_retry_after(row: Refusal, of_the_exception: str | None) -> str | None:
    if row.retry_after is RetryAfter.ONE_SECOND:
        return "1"
    if row.retry_after is RetryAfter.THE_EXCEPTIONS:
        assert of_the_exception is not None
        return of_the_exception
    return None


@pytest.mark.parametrize("row", REFUSALS, ids=[row.name for row in REFUSALS])
def test_every_refusal_is_answered_counted_and_audited_as_its_row_says(
    row: Refusal, make_app: Callable[..., Any], tmp_path: Path, monkeypatch: Any
) -> None:
    audit_path = tmp_path / "audit.log"

    def build(**settings: Any) -> Any:
        return make_app(AUDIT_LOG=str(audit_path), **settings)

    with TRIGGERS[row.name](build, monkeypatch) as (send, reason, retry_after):
        counts_before, lines_before = _outcome_counts(), len(_audit_lines(audit_path))
        response = send()
        counted = {
            outcome: after - counts_before[outcome]
            for outcome, after in _outcome_counts().items()
            if after != counts_before[outcome]
        }
        new_lines = _audit_lines(audit_path)[lines_before:]

    # What the client gets.
    assert response.status_code == row.status
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json() == error_document(row.code, row.message_for(reason))
    assert response.headers.get("Retry-After") == _expected_retry_after(row, retry_after)
    challenge = response.headers.get("WWW-Authenticate")
    assert (challenge is not None) == row.challenge
    if row.challenge:
        assert challenge.startswith('Basic realm="')
    # How it is counted and recorded.
    assert counted == ({row.metric_outcome: 1} if row.metric_outcome else {})
    if row.audit_outcome is None:
        assert new_lines == []
    else:
        [line] = new_lines
        assert (line["outcome"], line["status"], line["reason"]) == (
            row.audit_outcome,
            row.status,
            reason,
        )


def test_the_table_is_one_fact_per_thing() -> None:
    names = [row.name for row in REFUSALS]
    assert len(set(names)) == len(names)
    # One registry error code per status, so Flask's own errors can be given theirs by status.
    assert len(errors.ERROR_CODE_BY_STATUS) == len({(r.status, r.code) for r in REFUSALS})
    # The metrics count exactly the outcomes the table names, and a token issued.
    named = {row.metric_outcome for row in REFUSALS if row.metric_outcome}
    assert set(metrics.OUTCOMES) == {errors.ISSUED} | named
    assert len(metrics.OUTCOMES) == len(set(metrics.OUTCOMES))


def test_every_refusal_class_names_a_row_of_the_table() -> None:
    classes = [cls for cls in vars(errors).values() if isinstance(cls, type)]
    refused = [cls for cls in classes if issubclass(cls, Refused) and cls is not Refused]
    assert refused
    for cls in refused:
        assert cls.refusal in REFUSALS, cls


def test_flask_served_pages_answer_their_errors_from_the_table(
    client: Any, monkeypatch: Any
) -> None:
    """/metrics and /health are Flask's: a 405 there, or a bug, gets the table's code."""
    wrong_method = client.post("/metrics")
    assert wrong_method.status_code == errors.METHOD_NOT_ALLOWED.status
    assert wrong_method.get_json()["errors"][0]["code"] == errors.METHOD_NOT_ALLOWED.code
    assert "GET" in wrong_method.headers["Allow"]

    def broken(service: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(operations, "health_checks", broken)
    bug = client.get("/health")
    assert bug.status_code == errors.INTERNAL_ERROR.status
    assert bug.get_json() == error_document(
        errors.INTERNAL_ERROR.code, errors.INTERNAL_ERROR.message
    )


def test_an_http_error_the_table_has_no_status_for_is_unknown() -> None:
    response = http_error_response(ImATeapot())
    assert response.status_code == 418
    assert response.get_json()["errors"][0]["code"] == errors.UNKNOWN_ERROR_CODE == "UNKNOWN"
