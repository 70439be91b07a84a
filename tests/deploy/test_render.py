"""deploy/kubernetes renders with the real `kubectl kustomize`, every object it renders is valid
for Kubernetes (kubernetes-validate's schemas, offline, strict), and a change of configuration
rolls the pods that use it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from .manifests import (
    KUBERNETES,
    KUSTOMIZATIONS,
    NGINX_POD,
    NGINX_SITE,
    REDIS,
    REGISTRY,
    REPO,
    SETTINGS,
    SITE,
    TOKEN_SERVICE_CONFIG,
    Manifests,
    RenderError,
    debian_12_kubectl,
    kustomize,
    rendered,
)

# The oldest Kubernetes the manifests are checked against (README, "Kubernetes"), and the newest
# whose schemas kubernetes-validate ships.
OLDEST_KUBERNETES = "1.30"
VERSIONS = (OLDEST_KUBERNETES, latest_version())

# What Kustomize 2.0.3 (kubectl 1.20, Debian 12's kubernetes-client) reads in a kustomization.
# Newer fields (components, patches, replacements, labels, ...) would be ignored or refused there.
KUSTOMIZE_2_0_FIELDS = {
    "apiVersion",
    "kind",
    "bases",
    "resources",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "commonLabels",
    "commonAnnotations",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "images",
    "patchesStrategicMerge",
    "patchesJson6902",
    "vars",
    "crds",
    "configurations",
}


def _kustomization_files() -> list[Path]:
    return sorted(KUBERNETES.rglob("kustomization.yaml")) + [REPO / "nginx" / "kustomization.yaml"]


def _checkout_copy(tmp_path: Path) -> Path:
    """deploy/ and nginx/ copied as they lie in the checkout."""
    root = tmp_path / "checkout"
    shutil.copytree(REPO / "deploy", root / "deploy")
    shutil.copytree(REPO / "nginx", root / "nginx")
    return root


# --- rendering --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_each_kustomization_renders(name):
    manifests = Manifests(kustomize(KUBERNETES / name))
    for kind, names in {
        "Deployment": (SITE, REGISTRY),
        "Service": (SITE, REGISTRY),
        "PodDisruptionBudget": (SITE,),
        "PersistentVolumeClaim": ("registry-data",),
    }.items():
        for object_name in names:
            assert manifests.has(kind, object_name), (kind, object_name)
    for config_map in (SETTINGS, TOKEN_SERVICE_CONFIG, NGINX_SITE, NGINX_POD):
        manifests.generated(config_map)
    assert not manifests.of_kind("Secret"), "Secrets are the operator's, never rendered"


def _identities(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Each object's kind and name, a generated ConfigMap's without its hash (Kustomize's
    versions hash differently)."""
    generated = (SETTINGS, TOKEN_SERVICE_CONFIG, NGINX_SITE, NGINX_POD)
    found = []
    for item in objects:
        name = item["metadata"]["name"]
        for base in generated:
            if item["kind"] == "ConfigMap" and name.startswith(base + "-"):
                name = base
        found.append((item["kind"], name))
    return sorted(found)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_debian_12_kubectl_renders_the_same_objects(name):
    """README, "kubectl and Kubernetes versions": Debian 12's own kubectl renders every
    kustomization into the objects the machine's kubectl renders, and its generated names are
    the ones its Deployments refer to."""
    old = Manifests(kustomize(KUBERNETES / name, debian_12_kubectl()))
    assert _identities(old.objects) == _identities(rendered(name).objects)
    config_maps = {c["metadata"]["name"] for c in old.of_kind("ConfigMap")}
    for _, spec in old.pod_specs():
        for volume in spec.get("volumes", []):
            for source in volume.get("projected", {}).get("sources", [volume]):
                if "configMap" in source:
                    assert source["configMap"]["name"] in config_maps


def test_every_kustomization_shipped_is_tested():
    shipped = {path.parent for path in _kustomization_files()}
    assert shipped == {*(KUBERNETES / name for name in KUSTOMIZATIONS), REPO / "nginx"}


def test_nginx_directory_renders_alone():
    objects = kustomize(REPO / "nginx")
    assert [o["kind"] for o in objects] == ["ConfigMap"]


def test_a_kustomization_that_names_a_missing_file_is_refused(tmp_path):
    """Rendering can fail: the test above would see it."""
    root = _checkout_copy(tmp_path)
    (root / "deploy/kubernetes/base/token-service/repositories.json").unlink()
    with pytest.raises(RenderError, match="repositories.json"):
        kustomize(root / "deploy/kubernetes/base")


# --- Kubernetes' schemas ------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_object_matches_the_kubernetes_schemas(name, version):
    manifests = rendered(name)
    assert len(manifests.objects) >= 10
    for obj in manifests.objects:
        where = f"{name}: {obj['kind']}/{obj['metadata']['name']} (Kubernetes {version})"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {exc.message} at {'/'.join(map(str, exc.path))}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{where}: no such kind in this API version")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        # a misspelt field: strict validation knows every field's name
        (("spec", "template", "spec", "containers", 0, "securityContext"), {"readOnlyFS": True}),
        # a wrong type
        (("spec", "replicas"), "two"),
    ],
)
def test_the_schema_check_catches_a_broken_object(path, value):
    deployment = rendered("base").get("Deployment", SITE)
    target = deployment
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, OLDEST_KUBERNETES, strict=True)


# --- Kustomize 2.0.3 -----------------------------------------------------------------------------


def _check_kustomize_2_0(paths: list[Path]) -> None:
    for path in paths:
        kustomization = yaml.safe_load(path.read_text())
        assert set(kustomization) <= KUSTOMIZE_2_0_FIELDS, (path, set(kustomization))
        for resource in kustomization.get("resources", []):
            assert (path.parent / resource).is_file(), (path, resource)
        for base in kustomization.get("bases", []):
            assert (path.parent / base / "kustomization.yaml").is_file(), (path, base)


def test_kustomizations_use_only_what_kustomize_2_0_reads():
    """kubectl 1.20 (Debian 12) embeds Kustomize 2.0.3: no components, no `patches:`, and
    directories only under `bases:` (its `resources:` takes files)."""
    _check_kustomize_2_0(_kustomization_files())


@pytest.mark.parametrize(
    "kustomization",
    [{"components": ["../base"]}, {"resources": ["../base"]}, {"patches": [{"path": "p.yaml"}]}],
)
def test_the_kustomize_2_0_check_catches_newer_fields(tmp_path, kustomization):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "kustomization.yaml").write_text("resources: []\n")
    path = tmp_path / "overlay" / "kustomization.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(kustomization))
    with pytest.raises(AssertionError):
        _check_kustomize_2_0([path])


# --- configuration changes roll the pods -------------------------------------------------------


def _pod_templates(manifests: Manifests) -> dict[str, dict]:
    return {d["metadata"]["name"]: d["spec"]["template"] for d in manifests.of_kind("Deployment")}


@pytest.mark.parametrize(
    ("edited", "rolled"),
    [
        ("deploy/kubernetes/base/token-service/repositories.json", {SITE}),
        ("deploy/kubernetes/base/token-service/config.py", {SITE}),
        ("deploy/kubernetes/base/nginx/nginx.conf", {SITE}),
        ("nginx/json-errors.conf", {SITE}),
        ("nginx/registry.conf.template", {SITE}),
    ],
)
def test_a_configuration_change_rolls_the_pods_that_use_it(tmp_path, edited, rolled):
    """Every ConfigMap's name carries a hash of its contents and the Deployments name it: an edit
    is a new pod template (Kubernetes rolls the pods), for exactly the pods that use the file."""
    root = _checkout_copy(tmp_path)
    before = _pod_templates(Manifests(kustomize(root / "deploy/kubernetes/with-redis")))
    with open(root / edited, "a") as file:
        file.write("\n# an edit\n" if not edited.endswith(".json") else "\n")
    after = _pod_templates(Manifests(kustomize(root / "deploy/kubernetes/with-redis")))
    assert set(before) == set(after) == {SITE, REGISTRY, REDIS}
    assert {name for name in before if before[name] != after[name]} == rolled


def test_settings_the_registry_shares_roll_both(tmp_path):
    root = _checkout_copy(tmp_path)
    kustomization = root / "deploy/kubernetes/base/kustomization.yaml"
    text = kustomization.read_text()
    assert "- issuer=registry-token-service\n" in text
    kustomization.write_text(text.replace("issuer=registry-token-service", "issuer=another"))
    before = _pod_templates(rendered("base"))
    after = _pod_templates(Manifests(kustomize(root / "deploy/kubernetes/base")))
    assert before[SITE] != after[SITE] and before[REGISTRY] != after[REGISTRY]


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_config_map_has_a_hash_and_every_reference_finds_one(name):
    manifests = rendered(name)
    rendered_names = {c["metadata"]["name"] for c in manifests.of_kind("ConfigMap")}
    for base in (SETTINGS, TOKEN_SERVICE_CONFIG, NGINX_SITE, NGINX_POD):
        assert base not in rendered_names  # only its hashed name
    referenced = set()
    for _, spec in manifests.pod_specs():
        for volume in spec.get("volumes", []):
            sources = volume.get("projected", {}).get("sources", [volume])
            referenced.update(s["configMap"]["name"] for s in sources if "configMap" in s)
        for container in spec["containers"]:
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("configMapKeyRef")
                if ref:
                    referenced.add(ref["name"])
    assert referenced == rendered_names
