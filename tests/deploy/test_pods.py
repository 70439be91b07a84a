"""deploy/kubernetes' pods: non-root on a read-only root filesystem, resources, probes that ask
what they should (readiness the health endpoint, liveness the process alone), and a disruption
budget that keeps one site pod serving."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .manifests import (
    KUSTOMIZATIONS,
    NGINX,
    REDIS,
    REGISTRY,
    REPO,
    SITE,
    TOKEN_SERVICE,
    Breakage,
    Manifests,
    assert_check_catches,
    container_port,
    each_breakage,
    pod_labels,
    rendered,
    selects,
)

HEALTHCHECK = ["python", "-m", "auth_service.cli.healthcheck"]
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def _containers(m: Manifests) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for deployment, spec in m.pod_specs():
        for container in spec["containers"] + spec.get("initContainers", []):
            yield deployment, spec, container


# --- the checks ---------------------------------------------------------------------------------


def check_non_root_read_only(m: Manifests) -> None:
    for deployment, spec, container in _containers(m):
        where = f"{deployment}/{container['name']}"
        pod = spec.get("securityContext", {})
        own = container.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True or own.get("runAsNonRoot") is True, where
        # A numeric user, so the kubelet can check runAsNonRoot whatever the image says.
        user = own.get("runAsUser", pod.get("runAsUser"))
        assert isinstance(user, int) and user > 0, where
        assert own.get("readOnlyRootFilesystem") is True, where
        assert own.get("allowPrivilegeEscalation") is False, where
        assert own.get("capabilities", {}).get("drop") == ["ALL"], where
        assert "add" not in own.get("capabilities", {}), where
        assert "privileged" not in own or own["privileged"] is False, where
        seccomp = own.get("seccompProfile", pod.get("seccompProfile"))
        assert seccomp == {"type": "RuntimeDefault"}, where
        assert spec.get("automountServiceAccountToken") is False, deployment
        assert spec.get("enableServiceLinks") is False, deployment


def check_writable_places_are_volumes(m: Manifests) -> None:
    """With the root filesystem read-only, whatever a container writes is a volume: an emptyDir
    or a claim, never a ConfigMap's or Secret's."""
    for deployment, spec, container in _containers(m):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            kind = next(k for k in volume if k != "name")
            where = f"{deployment}/{container['name']}: {mount['mountPath']} ({kind})"
            if mount.get("readOnly"):
                continue
            assert kind in ("emptyDir", "persistentVolumeClaim"), where


def check_resources(m: Manifests) -> None:
    for deployment, _, container in _containers(m):
        where = f"{deployment}/{container['name']}"
        resources = container.get("resources", {})
        assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
        assert "memory" in resources.get("limits", {}), where


def check_probe_ports_are_the_containers_own(m: Manifests) -> None:
    for deployment, _, container in _containers(m):
        for probe_name in PROBES:
            probe = container.get(probe_name)
            if probe is None:
                continue
            for action in ("httpGet", "tcpSocket", "grpc"):
                if action in probe:
                    container_port(container, probe[action]["port"])
        assert "readinessProbe" in container and "livenessProbe" in container, (
            deployment,
            container["name"],
        )


def check_liveness_is_the_process_alone(m: Manifests) -> None:
    """Readiness asks the health endpoint; liveness and start-up only whether the process
    answers: a bad configuration edit fails health on every pod at once, and restarting them for
    it would crash-loop every one (the service refuses to start with a bad file)."""
    service = m.container(SITE, TOKEN_SERVICE)
    assert service["readinessProbe"]["exec"]["command"] == [*HEALTHCHECK, "--ready"]
    assert service["livenessProbe"]["exec"]["command"] == [*HEALTHCHECK, "--live"]
    assert service["startupProbe"]["exec"]["command"] == [*HEALTHCHECK, "--live"]
    for deployment, _, container in _containers(m):
        for probe_name in ("livenessProbe", "startupProbe"):
            probe = container.get(probe_name, {})
            assert "health" not in probe.get("httpGet", {}).get("path", ""), deployment
            command = probe.get("exec", {}).get("command", [])
            if command[:3] == HEALTHCHECK:
                assert command[3:] == ["--live"], (deployment, container["name"], probe_name)
        # Every probe finishes within its timeout (the healthcheck's own is 4 s).
        for probe_name in PROBES:
            if probe_name in container:
                assert container[probe_name].get("timeoutSeconds", 1) >= 1


def check_the_site_survives_losing_a_pod(m: Manifests) -> None:
    site = m.get("Deployment", SITE)["spec"]
    assert site["replicas"] >= 2
    assert site["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (budget,) = m.of_kind("PodDisruptionBudget")
    selector = budget["spec"]["selector"]
    assert selects(selector, pod_labels(m, SITE))
    for other in (REGISTRY, REDIS):
        if m.has("Deployment", other):
            assert not selects(selector, pod_labels(m, other)), other
    assert budget["spec"].get("maxUnavailable", 0) < site["replicas"]
    assert budget["spec"].get("minAvailable", 1) >= 1
    (spread,) = m.pod_spec(SITE)["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert selects(spread["labelSelector"], pod_labels(m, SITE))


CHECKS: dict[str, Callable[[Manifests], None]] = {
    "non-root, read-only": check_non_root_read_only,
    "writable places": check_writable_places_are_volumes,
    "resources": check_resources,
    "probe ports": check_probe_ports_are_the_containers_own,
    "liveness": check_liveness_is_the_process_alone,
    "losing a pod": check_the_site_survives_losing_a_pod,
}


@pytest.mark.parametrize("check", CHECKS.values(), ids=CHECKS.keys())
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_pods(name, check):
    check(rendered(name))


@pytest.mark.parametrize(
    ("option", "prefix"), [("--live", "not live: "), ("--ready", "not ready: ")]
)
def test_the_probe_commands_are_ones_the_healthcheck_runs(tmp_path, option, prefix):
    """The exec probes' command, run here against a socket nobody serves: it fails as a probe
    does (exit 1, one line), not as a command it doesn't know. (Against the real uWSGI:
    tests/e2e/test_operations.py.)"""
    service = rendered("base").container(SITE, TOKEN_SERVICE)
    commands = [service[probe]["exec"]["command"] for probe in PROBES]
    assert [*HEALTHCHECK, option] in commands
    result = subprocess.run(
        [sys.executable, *HEALTHCHECK[1:], option, str(tmp_path / "none.sock")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(prefix), result.stderr


def test_nginx_runs_as_the_image_nginx_user_and_the_service_as_the_dockerfile_user():
    m = rendered("base")
    assert m.container(SITE, NGINX)["securityContext"]["runAsUser"] == 101
    dockerfile = (REPO / "Dockerfile").read_text()
    user = m.container(SITE, TOKEN_SERVICE)["securityContext"]
    assert f"\nUSER {user['runAsUser']}:{user['runAsGroup']}\n" in dockerfile


# --- each check can fail ----------------------------------------------------------------------


def _security(m: Manifests, deployment: str, container: str) -> dict[str, Any]:
    return m.container(deployment, container)["securityContext"]


BREAKAGES: list[Breakage] = [
    (
        "nginx as root",
        lambda m: _security(m, SITE, NGINX).update(runAsUser=0),
        check_non_root_read_only,
    ),
    (
        "a writable root filesystem",
        lambda m: _security(m, REGISTRY, REGISTRY).pop("readOnlyRootFilesystem"),
        check_non_root_read_only,
    ),
    (
        "a capability kept",
        lambda m: _security(m, SITE, TOKEN_SERVICE)["capabilities"].update(add=["NET_ADMIN"]),
        check_non_root_read_only,
    ),
    (
        "a Secret mounted writable",
        lambda m: m.mount_at(SITE, TOKEN_SERVICE, "/etc/registry-token").pop("readOnly"),
        check_writable_places_are_volumes,
    ),
    (
        "no memory limit",
        lambda m: m.container(SITE, NGINX)["resources"]["limits"].pop("memory"),
        check_resources,
    ),
    (
        "a probe on a port nginx doesn't have",
        lambda m: m.container(SITE, NGINX)["livenessProbe"]["tcpSocket"].update(port="https"),
        check_probe_ports_are_the_containers_own,
    ),
    (
        "liveness on health",
        lambda m: m.container(SITE, TOKEN_SERVICE)["livenessProbe"]["exec"].update(
            command=HEALTHCHECK
        ),
        check_liveness_is_the_process_alone,
    ),
    (
        "a budget that selects nothing",
        lambda m: m.get("PodDisruptionBudget", SITE)["spec"]["selector"]["matchLabels"].update(
            {"app.kubernetes.io/name": "web"}
        ),
        check_the_site_survives_losing_a_pod,
    ),
]


@each_breakage(BREAKAGES)
def test_a_check_fails_on_a_broken_copy(breakage, check):
    assert_check_catches(breakage, check)
