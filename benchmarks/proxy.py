"""Proxy mode's cost (issue 17), measured against token mode in the same run.

``proxy-pull``: one pull of an image of :data:`LAYERS` small layers, the way a client does it,
over one keep-alive connection, one request at a time (the strictest case for a per-request
cost: nothing overlaps it). In token mode: ``GET /v2/`` (the registry's challenge), a token from
``/v2/token`` with Basic credentials (from the warm credential cache), then the manifest, the
config and every layer with that token. In proxy mode: ``GET /v2/`` (the Basic challenge), then
the manifest, the config and every layer with Basic credentials, each decided by the token
service through nginx's ``auth_request``. Pulls alternate between the two stacks; the target is
the ratio of the median pull times.

``proxy-pull-skopeo``: the same image pulled by a real client, ``skopeo copy`` to a ``dir:``
(containers/image: three layers at a time, its own process start and checks included), with
``--src-creds``; alternating between the modes as above. Reported beside the first.

``proxy-decision``: wrk at 16 connections sending a blob ``GET`` with Basic credentials (warm
caches) to a second server of the proxy-mode stack's nginx, which this benchmark adds: its
``/v2/`` location has the very auth part of the site's (``include auth-proxy.conf``) but serves a
small file instead of asking the registry, so what is measured is nginx, ``auth_request`` and the
decision endpoint. Debian's registry alone is far slower than that on these machines (see
``proxy-v2`` and ``token-v2``: ``GET /v2/`` through the real site, in proxy mode with Basic
credentials and in token mode with a token), and would be what a p99 through it measured.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from http.client import HTTPConnection
from urllib.parse import urlencode, urlsplit

from auth_service.stack.main import PROXY_MODE, Stack, free_port

from . import wrk
from .common import BenchmarkError, log, wait_until_idle
from .report import Target
from .scenarios import BASE, PASSWORD, SERVICE, USER, Configuration

PULL_ROW, DECISION_ROW = "proxy-pull", "proxy-decision"
# The same request to the same nginx, decided by benchmarks/ceiling.py's /auth/proxy instead.
DECISION_CEILING_ROW = "proxy-decision-ceiling"
PROXY_ROWS = (PULL_ROW, DECISION_ROW)
# Token mode and proxy mode, the same users and files; one stack each.
TOKEN_STACK = Configuration("proxy-token-mode", users=BASE.users)
PROXY_STACK = Configuration("proxy-mode", users=BASE.users, auth_mode=PROXY_MODE)
# What serves the decision ceiling: the proxy-mode stack with benchmarks/ceiling.py in uWSGI.
PROXY_CEILING_STACK = Configuration(
    "proxy-ceiling", users=BASE.users, auth_mode=PROXY_MODE, ceiling=True
)
REPOSITORY = "bench/layers50"
LAYERS = 50
LAYER_BYTES = 4096
PULLS = 20  # per mode and round
SKOPEO_PULLS = 5  # per mode and round
PULL_RATIO_MAX = 1.2
DECISION_P99_MS = 5.0
# The decision's p99 against its ceiling's, same run: what the decision adds to being asked.
DECISION_P99_OVER_CEILING_MAX = 1.2
DECISION_CONNECTIONS = 16

LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"


def _basic() -> str:
    return "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def _connection(stack: Stack) -> HTTPConnection:
    return HTTPConnection("127.0.0.1", stack.port, timeout=30)


def _request(
    connection: HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


def _token(connection: HTTPConnection, scope: str) -> str:
    query = urlencode({"service": SERVICE, "scope": scope})
    status, _, body = _request(connection, "GET", f"/v2/token?{query}", {"Authorization": _basic()})
    if status != 200:
        raise BenchmarkError(f"/v2/token: {status} {body[:200]!r}")
    return json.loads(body)["token"]


def _push_blob(connection: HTTPConnection, auth: str, data: bytes) -> str:
    """A monolithic upload as distribution takes one: POST, then one PUT with the blob."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, body = _request(
        connection, "POST", f"/v2/{REPOSITORY}/blobs/uploads/", {"Authorization": auth}
    )
    if status != 202:
        raise BenchmarkError(f"starting an upload: {status} {body[:200]!r}")
    location = urlsplit(headers["location"])
    path = f"{location.path}?{location.query}&digest={digest}"
    put_headers = {"Authorization": auth, "Content-Type": "application/octet-stream"}
    status, _, body = _request(connection, "PUT", path, put_headers, data)
    if status != 201:
        raise BenchmarkError(f"pushing a blob: {status} {body[:200]!r}")
    return digest


def seed(stack: Stack) -> None:
    """Push the image of :data:`LAYERS` layers, with a token (both modes take one)."""
    connection = _connection(stack)
    auth = "Bearer " + _token(connection, f"repository:{REPOSITORY}:pull,push")
    layers = []
    for i in range(LAYERS):
        data = os.urandom(LAYER_BYTES - 16) + i.to_bytes(16, "big")
        layers.append({"mediaType": LAYER_TYPE, "digest": _push_blob(connection, auth, data),
                       "size": len(data)})  # fmt: skip
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [layer["digest"] for layer in layers]}}).encode()  # fmt: skip
    config_digest = _push_blob(connection, auth, config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": len(config)},
        "layers": layers,
    }).encode()  # fmt: skip
    headers = {"Authorization": auth, "Content-Type": MANIFEST_TYPE}
    status, _, body = _request(
        connection, "PUT", f"/v2/{REPOSITORY}/manifests/1", headers, manifest
    )
    if status != 201:
        raise BenchmarkError(f"pushing the manifest: {status} {body[:200]!r}")
    connection.close()


def pull(stack: Stack, proxy: bool) -> float:
    """Seconds one pull of the image takes, as described above; checks what it got."""
    started = time.perf_counter()
    connection = _connection(stack)
    status, headers, _ = _request(connection, "GET", "/v2/", {})
    expected = "Basic " if proxy else "Bearer "
    if status != 401 or not headers.get("www-authenticate", "").startswith(expected):
        raise BenchmarkError(f"GET /v2/: {status} {headers}")
    # Proxy mode: the password on every request. Token mode: a token for the pull.
    scope = f"repository:{REPOSITORY}:pull"
    auth = _basic() if proxy else "Bearer " + _token(connection, scope)
    path = f"/v2/{REPOSITORY}/manifests/1"
    status, _, body = _request(
        connection, "GET", path, {"Authorization": auth, "Accept": MANIFEST_TYPE}
    )
    if status != 200:
        raise BenchmarkError(f"GET {path}: {status} {body[:200]!r}")
    manifest = json.loads(body)
    digests = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    for digest in digests:
        status, _, body = _request(
            connection, "GET", f"/v2/{REPOSITORY}/blobs/{digest}", {"Authorization": auth}
        )
        if status != 200 or "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise BenchmarkError(f"GET blob {digest}: {status}")
    connection.close()
    return time.perf_counter() - started


def skopeo_pull(stack: Stack) -> float:
    """Seconds ``skopeo copy`` takes to pull the image into a fresh ``dir:``."""
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise BenchmarkError("skopeo is not installed (apt-get install skopeo)")
    with tempfile.TemporaryDirectory(prefix="proxy-pull-") as directory:
        policy = f"{directory}/policy.json"
        with open(policy, "w") as file:
            json.dump({"default": [{"type": "insecureAcceptAnything"}]}, file)
        args = [
            skopeo, "--policy", policy, "copy", "--src-tls-verify=false",
            "--src-creds", f"{USER}:{PASSWORD}",
            f"docker://{stack.host}/{REPOSITORY}:1", f"dir:{directory}/image",
        ]  # fmt: skip
        env = {**os.environ, "REGISTRY_AUTH_FILE": f"{directory}/auth.json"}
        started = time.perf_counter()
        result = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)  # noqa: S603
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise BenchmarkError(f"skopeo copy: {result.stdout}{result.stderr}")
    return seconds


@dataclass
class DecisionStack(Stack):
    """The proxy-mode stack, with a second nginx server on ``decision_port`` whose ``/v2/``
    location decides as the site's does and then serves a file, not the registry."""

    decision_port: int = field(default_factory=free_port)

    @property
    def decision_url(self) -> str:
        return f"http://127.0.0.1:{self.decision_port}"

    def write_configs(self) -> None:
        super().write_configs()
        root = self.state_dir / "decision-root"
        root.mkdir(exist_ok=True)
        (root / "ok").write_text("ok\n")
        server = f"""
# benchmarks/proxy.py: the decision alone, measured without the registry.
server {{
    listen 127.0.0.1:{self.decision_port};
    include auth-proxy-locations.conf;
    location /v2/ {{
        include auth-proxy.conf;
        root {root};
        try_files /ok =404;
    }}
}}
"""
        with open(self.state_dir / "site.conf", "a") as site:
            site.write(server)


@dataclass
class ProxyMeasured:
    """Every pull's seconds by mode, and the wrk runs of the decision rows by name."""

    pulls: dict[str, list[float]]
    runs: dict[str, list[wrk.Result]]


def warm_up(token_stack: Stack, proxy_stack: Stack) -> None:
    for stack in (token_stack, proxy_stack):
        seed(stack)
    for _ in range(3):  # the credential caches, the token cache, every worker's imports
        pull(token_stack, proxy=False)
        pull(proxy_stack, proxy=True)


def measure_round(
    token_stack: Stack,
    proxy_stack: Stack,
    rows: set[str],
    seconds: float,
    into: ProxyMeasured,
    ceiling_stack: Stack | None = None,
) -> None:
    """One round: :data:`PULLS` pulls per mode, alternating; then the decision rows (with the
    decision ceiling right after the decision, when ``ceiling_stack`` serves it)."""
    if PULL_ROW in rows:
        wait_until_idle(token_stack)
        wait_until_idle(proxy_stack)
        for _ in range(PULLS):
            into.pulls.setdefault("token", []).append(pull(token_stack, proxy=False))
            into.pulls.setdefault("proxy", []).append(pull(proxy_stack, proxy=True))
        token, proxy = (statistics.median(into.pulls[m][-PULLS:]) for m in ("token", "proxy"))
        log(f"  {PULL_ROW}: token {token * 1000:.1f} ms, proxy {proxy * 1000:.1f} ms")
        for _ in range(SKOPEO_PULLS):
            into.pulls.setdefault("skopeo token", []).append(skopeo_pull(token_stack))
            into.pulls.setdefault("skopeo proxy", []).append(skopeo_pull(proxy_stack))
        token, proxy = (
            statistics.median(into.pulls[m][-SKOPEO_PULLS:])
            for m in ("skopeo token", "skopeo proxy")
        )
        log(f"  {PULL_ROW} (skopeo): token {token * 1000:.0f} ms, proxy {proxy * 1000:.0f} ms")
    if DECISION_ROW in rows:
        assert isinstance(proxy_stack, DecisionStack)
        token = _token(_connection(token_stack), "")
        blob = f"/v2/{REPOSITORY}/blobs/sha256:{'0' * 64}"
        decided = [(DECISION_ROW, proxy_stack, proxy_stack.decision_url + blob, _basic())]
        if ceiling_stack is not None:
            assert isinstance(ceiling_stack, DecisionStack)
            url = ceiling_stack.decision_url + blob
            decided.append((DECISION_CEILING_ROW, ceiling_stack, url, _basic()))
        for name, stack, url, header in (
            *decided,
            ("proxy-v2", proxy_stack, f"{proxy_stack.url}/v2/", _basic()),
            ("token-v2", token_stack, f"{token_stack.url}/v2/", f"Bearer {token}"),
        ):
            wait_until_idle(stack)
            command = wrk.command(url, DECISION_CONNECTIONS, seconds, [f"Authorization: {header}"])
            result = wrk.run(command, seconds)
            if result.non_2xx or result.socket_errors:
                raise BenchmarkError(f"{name}: {result.non_2xx} non-2xx, {result}")
            into.runs.setdefault(name, []).append(result)
            log(f"  {name} at {DECISION_CONNECTIONS}: {result.ok_per_second:,.0f} req/s, "
                f"p99 {result.p99_ms:.2f} ms")  # fmt: skip


def report(measured: ProxyMeasured) -> tuple[list[str], list[Target]]:
    """Lines for the table and the targets, from every round's pulls and median wrk runs."""
    lines: list[str] = []
    found: list[Target] = []
    if measured.pulls:
        token = statistics.median(measured.pulls["token"])
        proxy = statistics.median(measured.pulls["proxy"])
        count = len(measured.pulls["proxy"])
        lines.append(
            f"{PULL_ROW}: pull of {LAYERS} layers of {LAYER_BYTES} bytes, one connection, "
            f"median of {count}: token mode {token * 1000:.1f} ms, proxy mode "
            f"{proxy * 1000:.1f} ms ({proxy / token:.2f}x)"
        )
        found.append(Target(f"{PULL_ROW}: proxy / token mode", proxy / token, PULL_RATIO_MAX,
                            False))  # fmt: skip
    if "skopeo proxy" in measured.pulls:
        token = statistics.median(measured.pulls["skopeo token"])
        proxy = statistics.median(measured.pulls["skopeo proxy"])
        count = len(measured.pulls["skopeo proxy"])
        lines.append(
            f"{PULL_ROW} (skopeo copy to dir:, median of {count}): token mode "
            f"{token * 1000:.0f} ms, proxy mode {proxy * 1000:.0f} ms ({proxy / token:.2f}x)"
        )
        found.append(Target(f"{PULL_ROW} (skopeo): proxy / token mode", proxy / token,
                            PULL_RATIO_MAX, False))  # fmt: skip
    medians = {}
    for name, runs in measured.runs.items():
        median = medians[name] = sorted(runs, key=lambda r: r.ok_per_second)[len(runs) // 2]
        what = {
            DECISION_ROW: "a blob GET, decided only",
            DECISION_CEILING_ROW: "the same, decided by benchmarks/ceiling.py",
        }.get(name, "GET /v2/ through the site")
        lines.append(
            f"{name}: {what}, at {DECISION_CONNECTIONS} connections: "
            f"{median.ok_per_second:,.0f} req/s, p50 {median.p50_ms:.2f} ms, "
            f"p99 {median.p99_ms:.2f} ms"
        )
        if name == DECISION_ROW:
            found.append(Target(f"{DECISION_ROW}: p99 ms at {DECISION_CONNECTIONS} connections",
                                median.p99_ms, DECISION_P99_MS, False))  # fmt: skip
    if DECISION_ROW in medians and DECISION_CEILING_ROW in medians:
        decision, ceiling = medians[DECISION_ROW], medians[DECISION_CEILING_ROW]
        lines.append(
            f"{DECISION_ROW} / {DECISION_CEILING_ROW}: throughput "
            f"{decision.ok_per_second / ceiling.ok_per_second:.2f}x, "
            f"p99 {decision.p99_ms / ceiling.p99_ms:.2f}x"
        )
        found.append(Target(f"{DECISION_ROW}: p99 / {DECISION_CEILING_ROW}'s",
                            decision.p99_ms / ceiling.p99_ms, DECISION_P99_OVER_CEILING_MAX,
                            False))  # fmt: skip
    return lines, found
