"""The site pod's nginx configuration is one nginx accepts: rendered from the ConfigMaps the pod
mounts, as the nginx image's entrypoint renders it (envsubst of the variables its filter names,
with the container's environment), laid out as the pod lays it out, and checked by `nginx -t`
(Debian's nginx; the image's is the same program, newer).

The pod's paths are re-rooted in a temporary directory. Two things differ from the pod, each for a
reason: the registry's Service name does not resolve here, and nginx resolves an upstream's
host name while it reads the configuration, so 127.0.0.1 stands in for it; and the image's own
files (mime.types, uwsgi_params), which the pod's configuration includes from /etc/nginx, are
Debian's, at the same paths.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .manifests import NGINX, SITE, Manifests, rendered

NGINX_BINARY = "/usr/sbin/nginx"
IMAGE_FILES = (Path("/etc/nginx/mime.types"), Path("/etc/nginx/uwsgi_params"))


def _envsubst() -> str:
    found = shutil.which("envsubst")
    if found is None:
        pytest.fail("envsubst is missing (Debian's gettext-base), which the nginx image runs")
    return found


def _nginx() -> str:
    if not Path(NGINX_BINARY).is_file():
        pytest.fail("nginx is missing: `python3 -m auth_service.stack install --test` installs it")
    for path in IMAGE_FILES:
        assert path.is_file(), f"{path}: nginx's own file, which the pod's configuration includes"
    return NGINX_BINARY


def pod_nginx_layout(m: Manifests, root: Path, env_changes: dict[str, str] | None = None) -> Path:
    """The nginx container's files under ``root``, as the pod has them once the image's
    entrypoint has rendered the templates; returns nginx.conf's path there."""
    container = m.container(SITE, NGINX)
    env = {**m.env(SITE, NGINX), **(env_changes or {})}
    mounts = sorted(
        (mount["mountPath"] for mount in container["volumeMounts"]), key=len, reverse=True
    )
    in_pod = re.compile("|".join(re.escape(path) + r"(?=/|;|\s|$)" for path in mounts))

    def here(text: str) -> str:
        """The pod's mount paths in ``text``, moved under ``root``."""
        return in_pod.sub(lambda match: f"{root}{match.group(0)}", text)

    for mount in container["volumeMounts"]:
        (root / mount["mountPath"].lstrip("/")).mkdir(parents=True, exist_ok=True)
    template_dir = env["NGINX_ENVSUBST_TEMPLATE_DIR"]
    site_dir = root / template_dir.lstrip("/")
    volume = m.mount_at(SITE, NGINX, template_dir)["name"]
    for name, (kind, source, key) in m.files_of(SITE, volume).items():
        assert kind == "ConfigMap", name
        (site_dir / name).write_text(here(m.config_map(source)["data"][key]))

    # The entrypoint's 20-envsubst-on-templates.sh: the variables whose names match the filter,
    # substituted in each *.template of the template directory, into the output directory.
    names = [name for name in env if re.search(env["NGINX_ENVSUBST_FILTER"], name)]
    values = {name: here(env[name]) for name in names}
    if "REGISTRY_SERVERS" in values:  # does not resolve here (see the module's docstring)
        values["REGISTRY_SERVERS"] = re.sub(
            r"server [a-z0-9.-]+:", "server 127.0.0.1:", values["REGISTRY_SERVERS"]
        )
    output_dir = root / env["NGINX_ENVSUBST_OUTPUT_DIR"].lstrip("/")
    for template in site_dir.glob("*.template"):
        result = subprocess.run(
            [_envsubst(), " ".join(f"${{{name}}}" for name in names)],
            input=template.read_text(),
            env=values,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        (output_dir / template.name.removesuffix(".template")).write_text(result.stdout)

    args = container["args"]
    return Path(here(args[args.index("-c") + 1]))


def nginx_test(conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_nginx(), "-t", "-e", "stderr", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "auth_mode"),
    [("base", "token"), ("base", "proxy"), ("with-redis", "token"), ("example", "token")],
)
def test_nginx_accepts_the_pods_configuration(tmp_path, name, auth_mode):
    m = rendered(name)
    conf = pod_nginx_layout(m, tmp_path, {"AUTH_MODE": auth_mode})
    result = nginx_test(conf)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    site = (tmp_path / "etc/nginx/conf.d/registry.conf").read_text()
    assert f"include auth-{auth_mode}.conf;" in site
    assert "${" not in site  # every placeholder was filled


def test_the_example_takes_the_client_address_from_its_ingress(tmp_path):
    conf = pod_nginx_layout(rendered("example"), tmp_path)
    assert "real_ip_header X-Forwarded-For;" in (conf.parent / "real-ip.conf").read_text()
    assert nginx_test(conf).returncode == 0


@pytest.mark.parametrize(
    "env_changes",
    [
        {"TLS_INCLUDE": "no-such-tls.conf"},  # an include that isn't in the volume
        {"AUTH_MODE": "basic"},  # picks auth-basic.conf, which doesn't exist
        {"NGINX_ENVSUBST_FILTER": "^(LISTEN|SERVER_NAME)$"},  # placeholders left unfilled
    ],
    ids=["missing include", "unknown auth mode", "placeholders left"],
)
def test_nginx_refuses_a_broken_configuration(tmp_path, env_changes):
    """The test above can fail: nginx -t sees what the pod's nginx would refuse at start."""
    conf = pod_nginx_layout(rendered("base"), tmp_path, env_changes)
    result = nginx_test(conf)
    assert result.returncode != 0
    assert "emerg" in result.stderr
