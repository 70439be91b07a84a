"""deploy/kubernetes is wired as the service needs: the registry trusts what the token service
signs, nginx finds uWSGI's socket and the registry's Service, the service finds its config
directory (users.json from the users' Secret), the Secrets are the documented ones, the Ingress
routes the public paths, Prometheus finds the metrics, Redis is reached where the overlay says.

Each check is a function of the rendered objects, run on every kustomization shipped, and on a
broken copy (the last tests) to show it fails.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest

from auth_service import create_app
from auth_service.files.settings import CONFIG_FILE, ENV_PREFIX, REPOSITORIES_FILE, USERS_FILE
from auth_service.stack.main import NGINX_INCLUDES

from .. import helpers
from ..test_readme import readme, shell_commands
from .manifests import (
    KEY_SECRET,
    KUSTOMIZATIONS,
    NGINX,
    NGINX_POD,
    NGINX_SITE,
    REDIS,
    REGISTRY,
    REPO,
    SECRET_KEYS,
    SETTINGS,
    SITE,
    TLS_SECRET,
    TOKEN_SERVICE,
    TOKEN_SERVICE_CONFIG,
    USERS_SECRET,
    Breakage,
    Manifests,
    assert_check_catches,
    container_port,
    each_breakage,
    pod_labels,
    rendered,
    selects,
)

TEMPLATE = REPO / "nginx" / "registry.conf.template"
PLACEHOLDERS = set(re.findall(r"\$\{([A-Z_]+)\}", TEMPLATE.read_text()))
SERVER = re.compile(r"^\s*server\s+(\S+)\s*;\s*$")


def _server_address(directives: str) -> str:
    """The address of an upstream's one `server` directive (AUTH_SERVERS, REGISTRY_SERVERS)."""
    match = SERVER.match(directives)
    assert match, f"not one `server ADDRESS;` directive: {directives!r}"
    return match.group(1)


def _value_from(m: Manifests, deployment: str, container: str, name: str) -> dict[str, Any]:
    """Where an environment variable of the container takes its value from."""
    for variable in m.container(deployment, container).get("env", []):
        if variable["name"] == name:
            return variable.get("valueFrom", {"value": variable.get("value")})
    raise AssertionError(f"{deployment}/{container}: no {name}")


# --- the checks ---------------------------------------------------------------------------------


def check_registry_trusts_the_token_service(m: Manifests) -> None:
    """REGISTRY_AUTH_TOKEN_* are what the token service signs with and for."""
    service = m.env(SITE, TOKEN_SERVICE)
    registry = m.env(REGISTRY, REGISTRY)
    nginx = m.env(SITE, NGINX)
    assert registry["REGISTRY_AUTH"] == "token"
    assert registry["REGISTRY_AUTH_TOKEN_ISSUER"] == service["AUTH_SERVICE_ISSUER"]
    assert registry["REGISTRY_AUTH_TOKEN_SERVICE"] == service["AUTH_SERVICE_SERVICE"]
    # Not only equal: read from the one place, so an overlay can't change one side alone.
    for registry_name, service_name in (
        ("REGISTRY_AUTH_TOKEN_ISSUER", "AUTH_SERVICE_ISSUER"),
        ("REGISTRY_AUTH_TOKEN_SERVICE", "AUTH_SERVICE_SERVICE"),
    ):
        source = _value_from(m, REGISTRY, REGISTRY, registry_name)
        assert source == _value_from(m, SITE, TOKEN_SERVICE, service_name), registry_name
        assert source["configMapKeyRef"]["name"] == m.generated(SETTINGS)["metadata"]["name"]
    # The realm is the site's token endpoint on its public name, over the Ingress' TLS.
    assert registry["REGISTRY_AUTH_TOKEN_REALM"] == f"https://{nginx['SERVER_NAME']}/v2/token"
    # The certificate the registry trusts is the one the service signs with: the same key of the
    # same Secret, beside the key the service signs with.
    bundle = m.file_in(REGISTRY, REGISTRY, registry["REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE"])
    cert = m.file_in(SITE, TOKEN_SERVICE, service["AUTH_SERVICE_CERT_PATH"])
    key = m.file_in(SITE, TOKEN_SERVICE, service["AUTH_SERVICE_KEY_PATH"])
    assert bundle == cert == ("Secret", KEY_SECRET, "token.crt")
    assert key == ("Secret", KEY_SECRET, "token.key")
    # The registry sees the certificate only, never the key.
    for volume in m.pod_spec(REGISTRY)["volumes"]:
        if volume.get("secret", {}).get("secretName") == KEY_SECRET:
            assert [item["key"] for item in volume["secret"]["items"]] == ["token.crt"]


def check_nginx_reaches_uwsgi_through_the_shared_socket(m: Manifests) -> None:
    path = m.env(SITE, TOKEN_SERVICE)["AUTH_SERVICE_SOCKET"]
    assert _server_address(m.env(SITE, NGINX)["AUTH_SERVERS"]) == f"unix:{path}"
    service_mount = m.mount_holding(SITE, TOKEN_SERVICE, path)
    nginx_mount = m.mount_holding(SITE, NGINX, path)
    assert service_mount["name"] == nginx_mount["name"]
    assert not service_mount.get("readOnly")  # uWSGI makes the socket there
    assert "emptyDir" in m.volume(SITE, service_mount["name"])
    # uWSGI's socket is 0660: nginx's workers need its group, which the pod gives the volume.
    security = m.pod_spec(SITE)["securityContext"]
    nginx_group = m.container(SITE, NGINX)["securityContext"]["runAsGroup"]
    assert security["fsGroup"] == nginx_group
    assert m.container(SITE, TOKEN_SERVICE)["securityContext"]["runAsGroup"] == nginx_group


def check_nginx_reaches_the_registry_by_its_service(m: Manifests) -> None:
    host, _, port = _server_address(m.env(SITE, NGINX)["REGISTRY_SERVERS"]).rpartition(":")
    service = m.get("Service", host)
    (service_port,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
    assert selects(service["spec"]["selector"], pod_labels(m, REGISTRY))
    assert not selects(service["spec"]["selector"], pod_labels(m, SITE))
    registry = m.container(REGISTRY, REGISTRY)
    listening = container_port(registry, service_port["targetPort"])
    assert m.env(REGISTRY, REGISTRY)["REGISTRY_HTTP_ADDR"] == f":{listening}"


def check_the_site_service_reaches_nginx(m: Manifests) -> None:
    service = m.get("Service", SITE)
    assert selects(service["spec"]["selector"], pod_labels(m, SITE))
    (port,) = service["spec"]["ports"]
    nginx = m.container(SITE, NGINX)
    assert str(container_port(nginx, port["targetPort"])) == m.env(SITE, NGINX)["LISTEN"]


def check_the_config_directory(m: Manifests) -> None:
    """The service's config directory is one directory holding config.py and repositories.json
    (the ConfigMap) and users.json (the users' Secret), mounted whole, read-only."""
    config_dir = m.env(SITE, TOKEN_SERVICE)["AUTH_SERVICE_CONFIG_DIR"]
    mount = m.mount_at(SITE, TOKEN_SERVICE, config_dir)
    assert mount.get("readOnly") is True
    files = m.files_of(SITE, mount["name"])
    config = m.generated(TOKEN_SERVICE_CONFIG)["metadata"]["name"]
    assert files.get(CONFIG_FILE) == ("ConfigMap", config, CONFIG_FILE)
    assert files.get(REPOSITORIES_FILE) == ("ConfigMap", config, REPOSITORIES_FILE)
    assert files.get(USERS_FILE) == ("Secret", USERS_SECRET, USERS_FILE)
    # The whole Secret: revocations.json appears too when the operator puts it there.
    (secret,) = [
        s["secret"] for s in m.volume(SITE, mount["name"])["projected"]["sources"] if "secret" in s
    ]
    assert "items" not in secret


def check_no_subpath_mounts(m: Manifests) -> None:
    """A subPath mount is never updated: no container has one."""
    for deployment, spec in m.pod_specs():
        for container in spec["containers"] + spec.get("initContainers", []):
            for mount in container.get("volumeMounts", []):
                where = f"{deployment}/{container['name']}: {mount['mountPath']}"
                assert "subPath" not in mount and "subPathExpr" not in mount, where


def check_the_secrets_are_the_documented_ones(m: Manifests) -> None:
    expected = {KEY_SECRET, USERS_SECRET} | ({TLS_SECRET} if m.of_kind("Ingress") else set())
    assert m.referenced_secrets() == expected
    assert not m.of_kind("Secret")


def check_nginx_renders_the_template_from_its_volume(m: Manifests) -> None:
    """The nginx image's entrypoint finds the template and its includes where the pod mounts
    them, renders it into a writable directory, and nginx reads the result."""
    nginx = m.container(SITE, NGINX)
    env = m.env(SITE, NGINX)
    template_dir = env["NGINX_ENVSUBST_TEMPLATE_DIR"]
    site_files = m.files_of(SITE, m.mount_at(SITE, NGINX, template_dir)["name"])
    site = m.generated(NGINX_SITE)["metadata"]["name"]
    pod = m.generated(NGINX_POD)["metadata"]["name"]
    assert site_files["registry.conf.template"] == ("ConfigMap", site, "registry.conf.template")
    # The filter names exactly the template's placeholders, and each is set.
    names = re.fullmatch(r"\^\((.*)\)\$", env["NGINX_ENVSUBST_FILTER"]).group(1).split("|")
    assert set(names) == PLACEHOLDERS
    assert set(env) >= PLACEHOLDERS
    # nginx runs the pod's nginx.conf from that directory, so the template's relative includes
    # (and TLS_INCLUDE) are found beside it.
    args = nginx["args"]
    conf = args[args.index("-c") + 1]
    assert PurePosixPath(conf).parent == PurePosixPath(template_dir)
    assert site_files[PurePosixPath(conf).name] == ("ConfigMap", pod, "nginx.conf")
    for include in {*NGINX_INCLUDES, env["TLS_INCLUDE"], "uwsgi_params"}:
        assert include in site_files, include
    # The rendered site goes to a writable emptyDir, where nginx.conf includes it.
    output = m.mount_at(SITE, NGINX, env["NGINX_ENVSUBST_OUTPUT_DIR"])
    assert not output.get("readOnly") and "emptyDir" in m.volume(SITE, output["name"])
    nginx_conf = m.config_map(pod)["data"]["nginx.conf"]
    rendered_site = f"{env['NGINX_ENVSUBST_OUTPUT_DIR']}/registry.conf"
    assert re.search(rf"^\s*include {re.escape(rendered_site)};", nginx_conf, re.M)


def check_prometheus_finds_the_metrics_port(m: Manifests) -> None:
    template = m.get("Deployment", SITE)["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    port = int(annotations["prometheus.io/port"])
    assert container_port(m.container(SITE, NGINX), "metrics") == port
    metrics_conf = m.config_map(m.generated(NGINX_POD)["metadata"]["name"])["data"]
    server = metrics_conf["metrics-port.conf"]
    assert re.search(rf"^\s*listen {port};", server, re.M)
    assert f"location = {annotations['prometheus.io/path']} " in server
    assert re.search(r"^\s*include metrics-port.conf;", metrics_conf["nginx.conf"], re.M)
    # Not published: the Service carries the site only.
    service_ports = m.get("Service", SITE)["spec"]["ports"]
    assert all(p["targetPort"] != "metrics" and p["port"] != port for p in service_ports)


def check_redis_is_the_overlays_service(m: Manifests) -> None:
    url = urlsplit(m.env(SITE, TOKEN_SERVICE)["AUTH_SERVICE_REDIS_URL"])
    assert url.scheme == "redis"
    service = m.get("Service", url.hostname)
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == url.port]
    assert selects(service["spec"]["selector"], pod_labels(m, REDIS))
    redis = m.container(REDIS, REDIS)
    number = container_port(redis, port["targetPort"])
    # Only the site's pods may connect (where NetworkPolicies are enforced).
    (policy,) = m.of_kind("NetworkPolicy")
    assert selects(policy["spec"]["podSelector"], pod_labels(m, REDIS))
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    assert selects(peer["podSelector"], pod_labels(m, SITE))
    assert [p["port"] for p in rule["ports"]] == [number]


def _routed(ingress: dict[str, Any], host: str, path: str) -> tuple[str, Any] | None:
    """The backend Kubernetes' rules pick for ``path``: an Exact match first, then the longest
    Prefix whose path elements begin it."""
    best: tuple[int, dict[str, Any]] | None = None
    for rule in ingress["spec"]["rules"]:
        if rule.get("host") != host:
            continue
        for entry in rule["http"]["paths"]:
            if entry["pathType"] == "Exact" and entry["path"] == path:
                return _backend(entry)
            elements = [e for e in entry["path"].split("/") if e]
            begins = path.split("/")[1 : len(elements) + 1] == elements
            longer = best is None or len(elements) > best[0]
            if entry["pathType"] == "Prefix" and begins and longer:
                best = (len(elements), entry)
    return _backend(best[1]) if best else None


def _backend(entry: dict[str, Any]) -> tuple[str, Any]:
    service = entry["backend"]["service"]
    return service["name"], service["port"].get("name", service["port"].get("number"))


def check_the_ingress_routes_the_public_paths(m: Manifests) -> None:
    (ingress,) = m.of_kind("Ingress")
    host = m.env(SITE, NGINX)["SERVER_NAME"]
    for path in ("/v2/", "/v2/token", "/v2/team/app/manifests/latest", "/auth/token"):
        assert _routed(ingress, host, path) == (SITE, "http"), path
    assert _routed(ingress, host, "/auth/health") == (SITE, "http")
    for path in ("/auth/metrics", "/metrics", "/", "/auth/tokens", "/v22/"):
        assert _routed(ingress, host, path) is None, path
    (tls,) = ingress["spec"]["tls"]
    assert tls["hosts"] == [host] and tls["secretName"] == TLS_SECRET
    (port,) = m.get("Service", SITE)["spec"]["ports"]
    assert port["name"] == "http"


CHECKS: dict[str, Callable[[Manifests], None]] = {
    "registry trusts the token service": check_registry_trusts_the_token_service,
    "the socket": check_nginx_reaches_uwsgi_through_the_shared_socket,
    "the registry's Service": check_nginx_reaches_the_registry_by_its_service,
    "the site's Service": check_the_site_service_reaches_nginx,
    "the config directory": check_the_config_directory,
    "no subPath": check_no_subpath_mounts,
    "the Secrets": check_the_secrets_are_the_documented_ones,
    "nginx's template": check_nginx_renders_the_template_from_its_volume,
    "Prometheus": check_prometheus_finds_the_metrics_port,
}


# --- every kustomization ------------------------------------------------------------------------


@pytest.mark.parametrize("check", CHECKS.values(), ids=CHECKS.keys())
@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_wiring(name, check):
    check(rendered(name))


def test_redis_only_where_an_overlay_adds_it():
    assert "AUTH_SERVICE_REDIS_URL" not in rendered("base").env(SITE, TOKEN_SERVICE)
    assert not rendered("base").has("Deployment", REDIS)
    for name in ("with-redis", "example"):
        check_redis_is_the_overlays_service(rendered(name))


def test_the_example_ingress_routes_the_public_paths():
    check_the_ingress_routes_the_public_paths(rendered("example"))
    assert not rendered("base").of_kind("Ingress")


def test_the_example_sets_its_own_host_and_images():
    base, example = rendered("base"), rendered("example")
    assert example.env(SITE, NGINX)["SERVER_NAME"] != base.env(SITE, NGINX)["SERVER_NAME"]
    check_registry_trusts_the_token_service(example)
    base_image = base.container(SITE, TOKEN_SERVICE)["image"]
    example_image = example.container(SITE, TOKEN_SERVICE)["image"]
    assert example_image != base_image
    assert example_image.rpartition(":")[2] == base_image.rpartition(":")[2]


def test_images_are_pinned_and_the_service_is_the_package_version():
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    version = setup["metadata"]["version"]
    for name in KUSTOMIZATIONS:
        for deployment, spec in rendered(name).pod_specs():
            for container in spec["containers"]:
                image = container["image"]
                tag = image.rpartition(":")[2] if "@" not in image else "digest"
                assert "/" not in tag and tag not in ("", "latest"), (name, deployment, image)
    assert rendered("base").container(SITE, TOKEN_SERVICE)["image"].endswith(f":{version}")


def test_the_nginx_config_map_is_nginx_directory_itself():
    """nginx/ is the one copy: the ConfigMap holds every file the template includes, as is."""
    data = rendered("base").generated(NGINX_SITE)["data"]
    assert {*NGINX_INCLUDES, "registry.conf.template", "plain-http.conf", "tls.conf"} == set(data)
    for name, text in data.items():
        assert text == (REPO / "nginx" / name).read_text(), name


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_the_service_starts_from_the_mounts(name, tmp_path, monkeypatch):
    """The token service, built from what the pod gives it: the container's environment,
    config.py and repositories.json from the ConfigMap, users.json where the users' Secret
    appears (the config directory), the key and certificate where the key's Secret is mounted.
    It is healthy and issues a token the registry's settings accept."""
    m = rendered(name)
    env = m.env(SITE, TOKEN_SERVICE)

    def here(path: str) -> Path:  # the container's path, under tmp_path
        return tmp_path / path.lstrip("/")

    config_dir = here(env["AUTH_SERVICE_CONFIG_DIR"])
    config_dir.mkdir(parents=True)
    for file_name, text in m.generated(TOKEN_SERVICE_CONFIG)["data"].items():
        (config_dir / file_name).write_text(text)
    # users.json stands for the users' Secret, which the pod shows in the config directory.
    user_file = f"{env['AUTH_SERVICE_CONFIG_DIR']}/{USERS_FILE}"
    assert m.file_in(SITE, TOKEN_SERVICE, user_file) == ("Secret", USERS_SECRET, USERS_FILE)
    helpers.write_json(config_dir / USERS_FILE, helpers.users_document())
    key = helpers.make_key()
    cert = helpers.make_cert(key)
    here(env["AUTH_SERVICE_KEY_PATH"]).parent.mkdir(parents=True, exist_ok=True)
    here(env["AUTH_SERVICE_KEY_PATH"]).write_bytes(helpers.key_pem(key))
    here(env["AUTH_SERVICE_CERT_PATH"]).write_bytes(helpers.cert_pem(cert))
    for variable in [v for v in os.environ if v.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(variable)
    for variable, value in env.items():
        if variable.startswith(ENV_PREFIX) and variable != "AUTH_SERVICE_REDIS_URL":
            # Paths into tmp_path; REDIS_URL names a Service that doesn't resolve here.
            monkeypatch.setenv(variable, str(here(value)) if value.startswith("/") else value)

    app = create_app({"TESTING": True})
    client = app.test_client()
    assert client.get("/health").status_code == 200
    registry = m.env(REGISTRY, REGISTRY)
    service = registry["REGISTRY_AUTH_TOKEN_SERVICE"]
    answer = client.get(
        f"/v2/token?service={service}&scope=repository:team/app:pull",
        headers=helpers.basic("alice", helpers.PASSWORDS["alice"]),
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    claims = helpers.verify_token(
        answer.get_json()["token"],
        cert,
        audience=service,
        issuer=registry["REGISTRY_AUTH_TOKEN_ISSUER"],
    )
    assert helpers.access_of(claims) == {("repository", "team/app"): {"pull"}}


def _readme_kubectl_commands() -> list[list[str]]:
    """The README's kubectl commands, as words (the `kubectl` and its `-n NAMESPACE` left out);
    each stage of a pipeline is one."""
    commands = []
    for command in shell_commands(readme()):
        for stage in command.text.split(" | "):
            if not stage.startswith("kubectl "):
                continue
            words = shlex.split(stage)[1:]
            if words[:1] == ["-n"]:
                words = words[2:]
            commands.append(words)
    return commands


def test_the_readme_creates_the_secrets_with_the_keys_the_manifests_read():
    creates = {
        words[3]: words[4:]
        for words in _readme_kubectl_commands()
        if words[:2] == ["create", "secret"] and "--dry-run=client" not in words
    }
    assert set(creates) >= {KEY_SECRET, USERS_SECRET, TLS_SECRET}
    for secret, keys in SECRET_KEYS.items():
        files = {w.split("=")[1] for w in creates[secret] if w.startswith("--from-file=")}
        assert files == set(keys), secret


def test_the_readme_applies_the_shipped_kustomizations():
    commands = _readme_kubectl_commands()
    applied = [w[w.index("-k") + 1] for w in commands if w[:1] == ["apply"] and "-k" in w]
    assert applied
    for directory in applied:
        assert directory.removeprefix("deploy/kubernetes/") in KUSTOMIZATIONS, directory


# --- each check can fail ----------------------------------------------------------------------


def _set_env(m: Manifests, deployment: str, container: str, name: str, value: str) -> None:
    for variable in m.container(deployment, container)["env"]:
        if variable["name"] == name:
            variable.pop("valueFrom", None)
            variable["value"] = value
            return
    raise AssertionError(name)


def _mount(m: Manifests, deployment: str, container: str, path: str) -> dict[str, Any]:
    return m.mount_at(deployment, container, path)


BREAKAGES: list[Breakage] = [
    (
        "another issuer for the registry",
        lambda m: _set_env(m, REGISTRY, REGISTRY, "REGISTRY_AUTH_TOKEN_ISSUER", "someone"),
        check_registry_trusts_the_token_service,
    ),
    (
        "a realm on another host",
        lambda m: _set_env(
            m, REGISTRY, REGISTRY, "REGISTRY_AUTH_TOKEN_REALM", "https://elsewhere/v2/token"
        ),
        check_registry_trusts_the_token_service,
    ),
    (
        "the registry trusting a certificate not in the Secret",
        lambda m: _set_env(m, REGISTRY, REGISTRY, "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE", "/x.crt"),
        check_registry_trusts_the_token_service,
    ),
    (
        "the key's Secret under another name",
        lambda m: m.volume(SITE, "token-key")["secret"].update(secretName="token-key"),
        check_the_secrets_are_the_documented_ones,
    ),
    (
        "another socket for nginx",
        lambda m: _set_env(m, SITE, NGINX, "AUTH_SERVERS", "server unix:/tmp/token.sock;"),
        check_nginx_reaches_uwsgi_through_the_shared_socket,
    ),
    (
        "the registry's Service renamed",
        lambda m: m.get("Service", REGISTRY)["metadata"].update(name="docker-registry"),
        check_nginx_reaches_the_registry_by_its_service,
    ),
    (
        "users.json missing from the config directory",
        lambda m: m.volume(SITE, "config")["projected"]["sources"].pop(),
        check_the_config_directory,
    ),
    (
        "config.py mounted with subPath",
        lambda m: _mount(m, SITE, TOKEN_SERVICE, "/config").update(subPath="config.py"),
        check_no_subpath_mounts,
    ),
    (
        "a placeholder the filter lets through no more",
        lambda m: _set_env(m, SITE, NGINX, "NGINX_ENVSUBST_FILTER", "^(LISTEN|SERVER_NAME)$"),
        check_nginx_renders_the_template_from_its_volume,
    ),
    (
        "Prometheus told another port",
        lambda m: m.get("Deployment", SITE)["spec"]["template"]["metadata"]["annotations"].update(
            {"prometheus.io/port": "9090"}
        ),
        check_prometheus_finds_the_metrics_port,
    ),
]


@each_breakage(BREAKAGES)
def test_a_check_fails_on_a_broken_copy(breakage, check):
    assert_check_catches(breakage, check)


# The overlays' own checks, broken in the example (which has Redis and the Ingress).
OVERLAY_BREAKAGES: list[Breakage] = [
    (
        "REDIS_URL elsewhere",
        lambda m: _set_env(m, SITE, TOKEN_SERVICE, "AUTH_SERVICE_REDIS_URL", "redis://x:1/0"),
        check_redis_is_the_overlays_service,
    ),
    (
        "Redis open to the registry",
        lambda m: m.get("NetworkPolicy", REDIS)["spec"]["ingress"][0]["from"][0].update(
            podSelector={"matchLabels": {"app.kubernetes.io/name": REGISTRY}}
        ),
        check_redis_is_the_overlays_service,
    ),
    (
        "/auth/metrics published",
        lambda m: m.get("Ingress", "registry")["spec"]["rules"][0]["http"]["paths"].append(
            {
                "path": "/auth/",
                "pathType": "Prefix",
                "backend": {"service": {"name": SITE, "port": {"name": "http"}}},
            }
        ),
        check_the_ingress_routes_the_public_paths,
    ),
]


@each_breakage(OVERLAY_BREAKAGES)
def test_an_overlay_check_fails_on_a_broken_copy(breakage, check):
    assert_check_catches(breakage, check, "example")
