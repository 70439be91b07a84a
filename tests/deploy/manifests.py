"""The Kubernetes manifests of deploy/kubernetes as `kubectl apply -k` would send them: rendered by
the real ``kubectl kustomize``, parsed, and looked up the way the wiring tests need (a pod's
containers, their resolved environment, what is mounted where).

A missing kubectl is a failure, never a skip: CI installs it (``python3 -m auth_service.stack
install --test``).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
# Every kustomization shipped, by the directory `kubectl apply -k` is given (README, "Kubernetes").
KUSTOMIZATIONS = ("base", "with-redis", "example")
# The Secrets the manifests read and never make, by the names the README documents, with the
# keys each must hold.
KEY_SECRET = "registry-token-key"
USERS_SECRET = "registry-token-users"
TLS_SECRET = "registry-tls"  # the example's Ingress certificate
SECRET_KEYS = {KEY_SECRET: ("token.key", "token.crt"), USERS_SECRET: ("users.json",)}

# The workloads and their containers.
SITE, REGISTRY, REDIS = "site", "registry", "redis"
TOKEN_SERVICE, NGINX = "token-service", "nginx"
# The ConfigMaps, by the names the kustomizations give them (the rendered ones carry a hash).
SETTINGS, TOKEN_SERVICE_CONFIG, NGINX_SITE, NGINX_POD = (
    "registry-auth-settings",
    "token-service-config",
    "nginx-site",
    "nginx-pod",
)


class RenderError(AssertionError):
    """kubectl kustomize refused a kustomization; the message is its error."""


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail(
            "kubectl is missing: `python3 -m auth_service.stack install --test` installs Debian's "
            "kubernetes-client"
        )
    return found


def debian_12_kubectl() -> str:
    """Debian 12's kubectl (1.20, Kustomize 2.0.3), which ``install --test`` unpacks beside the
    project whatever kubectl the machine has."""
    from auth_service.stack.main import DEBIAN_12_KUBECTL_DIR

    found = DEBIAN_12_KUBECTL_DIR / "usr" / "bin" / "kubectl"
    if not found.exists():
        pytest.fail(
            f"{found} is missing: `python3 -m auth_service.stack install --test` unpacks Debian's "
            "kubernetes-client there"
        )
    return str(found)


def kustomize(directory: Path, kubectl_path: str | None = None) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize DIRECTORY`` renders, in its order (with the machine's
    kubectl, or the one given)."""
    result = subprocess.run(
        [kubectl_path or kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RenderError(f"kubectl kustomize {directory}: {result.stderr.strip()}")
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@functools.cache
def _rendered_objects(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize(KUBERNETES / name))


def rendered(name: str) -> Manifests:
    """A shipped kustomization (one of :data:`KUSTOMIZATIONS`), rendered once per test run; each
    call gets its own copy, free to be broken by a test."""
    return Manifests(yaml.safe_load(yaml.safe_dump(list(_rendered_objects(name)))))


# (what it breaks, how, the check that must then fail): each module's proof that its checks can.
Breakage = tuple[str, Callable[["Manifests"], None], Callable[["Manifests"], None]]


def each_breakage(breakages: list[Breakage]) -> pytest.MarkDecorator:
    """Parametrize a test by ``(breakage, check)``, one case per breakage, named for it."""
    return pytest.mark.parametrize(
        ("breakage", "check"),
        [(breakage, check) for _, breakage, check in breakages],
        ids=[what for what, _, _ in breakages],
    )


def assert_check_catches(
    breakage: Callable[[Manifests], None], check: Callable[[Manifests], None], name: str = "base"
) -> None:
    """``check`` passes on kustomization ``name`` as shipped, and fails on a copy ``breakage``
    has broken."""
    broken = rendered(name)
    check(broken)
    breakage(broken)
    with pytest.raises(AssertionError):
        check(broken)


@dataclass(frozen=True)
class SecretValue:
    """An environment variable's value from a Secret: not in the manifests."""

    name: str
    key: str


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(value: str, earlier: dict[str, Any]) -> str:
    """Kubernetes' expansion of ``$(NAME)`` in an env value from the variables defined before it
    (``$$`` is a ``$``; an unknown name stays as written)."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        known = earlier.get(match.group(1))
        return known if isinstance(known, str) else match.group(0)

    return _REFERENCE.sub(substitute, value)


class Manifests:
    """The rendered objects of one kustomization."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
        return found[0]

    def has(self, kind: str, name: str) -> bool:
        return any(o["metadata"]["name"] == name for o in self.of_kind(kind))

    def generated(self, name: str) -> dict[str, Any]:
        """The ConfigMap the kustomizations call ``name``, rendered as ``name-<hash>``."""
        found = [
            o
            for o in self.of_kind("ConfigMap")
            if re.fullmatch(rf"{re.escape(name)}-[a-z0-9]{{10}}", o["metadata"]["name"])
        ]
        assert len(found) == 1, f"ConfigMap {name}-<hash>: {len(found)} rendered"
        return found[0]

    def config_map(self, name: str) -> dict[str, Any]:
        return self.get("ConfigMap", name)

    def pod_spec(self, deployment: str) -> dict[str, Any]:
        return self.get("Deployment", deployment)["spec"]["template"]["spec"]

    def pod_specs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for deployment in self.of_kind("Deployment"):
            yield deployment["metadata"]["name"], deployment["spec"]["template"]["spec"]

    def container(self, deployment: str, name: str) -> dict[str, Any]:
        found = [c for c in self.pod_spec(deployment)["containers"] if c["name"] == name]
        assert len(found) == 1, f"{deployment}: container {name}: {len(found)}"
        return found[0]

    def env(self, deployment: str, container: str) -> dict[str, Any]:
        """The container's environment as the kubelet would set it: literal values expanded,
        ConfigMap keys looked up (an optional one that is missing leaves the variable unset),
        Secret keys as :class:`SecretValue`."""
        environment: dict[str, Any] = {}
        for variable in self.container(deployment, container).get("env", []):
            name = variable["name"]
            if "value" in variable:
                environment[name] = expand(str(variable["value"]), environment)
                continue
            source = variable["valueFrom"]
            if "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                data = self.config_map(ref["name"]).get("data", {})
                if ref["key"] in data:
                    environment[name] = data[ref["key"]]
                else:
                    assert ref.get("optional"), f"{name}: {ref['name']} has no key {ref['key']}"
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                environment[name] = SecretValue(ref["name"], ref["key"])
            else:
                raise AssertionError(f"{name}: a source the tests don't know: {source}")
        return environment

    def volume(self, deployment: str, name: str) -> dict[str, Any]:
        found = [v for v in self.pod_spec(deployment).get("volumes", []) if v["name"] == name]
        assert len(found) == 1, f"{deployment}: volume {name}: {len(found)}"
        return found[0]

    def mount_at(self, deployment: str, container: str, path: str) -> dict[str, Any]:
        """The container's volume mount whose mountPath is ``path``."""
        mounts = self.container(deployment, container).get("volumeMounts", [])
        found = [m for m in mounts if PurePosixPath(m["mountPath"]) == PurePosixPath(path)]
        assert len(found) == 1, f"{deployment}/{container}: nothing mounted at {path}"
        return found[0]

    def mount_holding(self, deployment: str, container: str, path: str) -> dict[str, Any]:
        """The mount of the directory holding the file ``path``."""
        return self.mount_at(deployment, container, str(PurePosixPath(path).parent))

    def files_of(self, deployment: str, volume_name: str) -> dict[str, tuple[str, str, str]]:
        """What a configMap, secret or projected volume shows, by file name: (kind of source,
        its name, its key). A Secret's keys are unknown here (Secrets are made by the operator):
        the documented ones (:data:`SECRET_KEYS`) stand for them."""
        volume = self.volume(deployment, volume_name)
        sources = volume["projected"]["sources"] if "projected" in volume else [volume]
        files: dict[str, tuple[str, str, str]] = {}
        for source in sources:
            if "configMap" in source:
                kind, name = "ConfigMap", source["configMap"]["name"]
                items = source["configMap"].get("items")
                keys = list(self.config_map(name).get("data", {}))
            elif "secret" in source:
                kind = "Secret"
                secret = source["secret"]
                name = secret.get("name") or secret["secretName"]
                items = secret.get("items")
                keys = list(SECRET_KEYS.get(name, ()))
            else:
                continue
            for item in items or [{"key": key, "path": key} for key in keys]:
                files[item["path"]] = (kind, name, item["key"])
        return files

    def file_in(self, deployment: str, container: str, path: str) -> tuple[str, str, str]:
        """(kind of source, its name, its key) of the file at ``path`` in the container."""
        mount = self.mount_holding(deployment, container, path)
        files = self.files_of(deployment, mount["name"])
        name = PurePosixPath(path).name
        assert name in files, f"{path}: not in volume {mount['name']} ({sorted(files)})"
        return files[name]

    def referenced_secrets(self) -> set[str]:
        """Every Secret a pod or an Ingress names."""
        names: set[str] = set()
        for _, spec in self.pod_specs():
            for volume in spec.get("volumes", []):
                if "secret" in volume:
                    names.add(volume["secret"]["secretName"])
                for source in volume.get("projected", {}).get("sources", []):
                    if "secret" in source:
                        names.add(source["secret"]["name"])
            for container in spec["containers"] + spec.get("initContainers", []):
                for variable in container.get("env", []):
                    ref = variable.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        names.add(ref["name"])
                for source in container.get("envFrom", []):
                    if "secretRef" in source:
                        names.add(source["secretRef"]["name"])
        for ingress in self.of_kind("Ingress"):
            names.update(tls["secretName"] for tls in ingress["spec"].get("tls", []))
        return names


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels only, or a Service's plain map) selects ``labels``."""
    assert "matchExpressions" not in selector, "the tests read matchLabels only"
    wanted = selector.get("matchLabels", selector)
    return bool(wanted) and all(labels.get(key) == value for key, value in wanted.items())


def pod_labels(manifests: Manifests, deployment: str) -> dict[str, str]:
    return manifests.get("Deployment", deployment)["spec"]["template"]["metadata"]["labels"]


def container_port(container: dict[str, Any], port: int | str) -> int:
    """The number of a port a probe or Service names, which must be one the container declares."""
    ports = container.get("ports", [])
    for declared in ports:
        if port in (declared.get("name"), declared["containerPort"]):
            return declared["containerPort"]
    raise AssertionError(f"container {container['name']} declares no port {port!r}: {ports}")
