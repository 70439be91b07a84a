"""The endpoints operators and their tools poll: ``GET /health`` and ``GET /metrics``.

nginx publishes them as ``/auth/health`` and ``/auth/metrics`` (nginx/registry.conf.template);
the container's HEALTHCHECK asks uWSGI's socket directly (:mod:`auth_service.cli.healthcheck`).
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app

from auth_service.http import EXTENSION
from auth_service.http.responses import json_response
from auth_service.records import metrics
from auth_service.service import TokenService

bp = Blueprint("operations", __name__)

# Checks whose failure leaves the instance serving every request, with a fallback: "degraded",
# still 200, so that a load balancer or Kubernetes keeps it (all instances lose Redis at once).
DEGRADING_CHECKS = frozenset({"redis_reachable"})


def health_checks(service: TokenService) -> tuple[dict[str, bool], list[str]]:
    """Each check by name, passed or not, and one line per failure (no secrets, no user names).

    - ``config_loaded``: users.json, repositories.json and groups.json are parsed and serving;
    - ``key_usable``: the certificate is valid now and the key signs a token that verifies;
    - ``last_reload_ok``: the last change to those files, and to revocations.json, loaded
      (a failed one leaves the last good version serving, which is why it fails this check);
    - ``redis_reachable``, only with ``REDIS_URL``: Redis answers a PING (not tried for a second
      after a failure). Failing it degrades the service, it doesn't fail it: see
      :data:`DEGRADING_CHECKS`.
    """
    problems = []
    # current() also reloads files that changed, so this reflects the files as they are now.
    try:
        access = service.live.current()
        service.revocations.current()
        config_loaded = access.users is not None and access.anonymous is not None
    except Exception:  # a health check reports, it never fails with a 500
        current_app.logger.exception("health check: reading the configuration failed")
        config_loaded = False
    if not config_loaded:
        problems.append("users.json, repositories.json or groups.json is not loaded")
    key_problem = service.signer.unusable_reason()
    if key_problem:
        problems.append(key_problem)
    reload_failures = [
        files
        for files, ok in (
            ("users.json, repositories.json or groups.json", service.live.last_reload_ok),
            ("revocations.json", service.revocations.last_reload_ok),
        )
        if not ok
    ]
    for files in reload_failures:
        problems.append(f"the last reload of {files} failed; the last good version is serving")
    checks = {
        "config_loaded": config_loaded,
        "key_usable": key_problem is None,
        "last_reload_ok": not reload_failures,
    }
    if service.shared is not None:
        checks["redis_reachable"] = service.shared.connection.reachable()
        if not checks["redis_reachable"]:
            # No address: it would tell the public about the inside; the log has it.
            problems.append(
                "Redis (REDIS_URL) is unreachable: login throttling uses this instance's own "
                "buckets and refresh grants the last revocations it saw"
            )
    return checks, problems


@bp.get("/health")
def health() -> Response:
    """200 ``{"status": "ok", "checks": {...}}`` when every check passes; 200 ``degraded`` when
    only :data:`DEGRADING_CHECKS` fail; else 503 ``failing``."""
    checks, problems = health_checks(current_app.extensions[EXTENSION])
    failed = {name for name, passed in checks.items() if not passed}
    status = "ok" if not failed else "degraded" if failed <= DEGRADING_CHECKS else "failing"
    body = {"status": status, "checks": checks, "problems": problems}
    return json_response(body, 503 if status == "failing" else 200)


@bp.get("/metrics")
def metrics_exposition() -> Response:
    """The Prometheus text exposition, summed over all uWSGI workers of this instance."""
    shared = current_app.extensions[EXTENSION].shared
    if shared is not None:
        shared.connection.reachable()  # auth_redis_up as of now, not as of a dead worker
    response = Response(metrics.render(), content_type=metrics.CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    """Register ``/health`` and ``/metrics``."""
    app.register_blueprint(bp)
