"""What the registry requires for one request, from its method and URI: proxy mode's scopes.

The registry (distribution 2.8.2 and 3.1.x alike, ``registry/handlers/app.go``) matches the path
against its routes in this order, and its ``authorized`` asks the token for:

    /v2/                                      any valid token, no access
    /v2/_catalog                              registry:catalog:*   (any method)
    /v2/<name>/tags/list                      \\
    /v2/<name>/manifests/<tag or digest>       |  by method (appendAccessRecords):
    /v2/<name>/blobs/<digest>                  |    GET, HEAD         repository:<name>:pull
    /v2/<name>/blobs/uploads/                  |    POST, PUT, PATCH  repository:<name>:pull,push
    /v2/<name>/blobs/uploads/<uuid>           /     DELETE            repository:<name>:delete
                                                    any other         nothing (the registry: 405)
    plus, on a repository route whose query has ``from=<other>``: repository:<other>:pull
    (a cross-repository mount; ``mount`` itself is not needed).

``<name>`` is everything between ``/v2/`` and the route's keyword, ``host:port/`` prefixes and
nested paths included (``reference.NameRegexp``). A path no route matches (``/v2/<name>/
referrers/<digest>``, which 2.8 and 3.1 don't serve), a path the registry's router would redirect
(``//``, ``.`` or ``..`` segments, a missing or extra trailing slash) and a path that is not
valid percent-encoded UTF-8 need no access: they get a token that opens nothing, and the
registry's own 404 or redirect.

The path is matched as the registry's router matches it: percent-decoded (Go's ``URL.Path``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

from auth_service.access import actions as act
from auth_service.access.scopes import _NAME, ResourceRequest, is_valid_name

# Route names, as the audit log records them.
BASE, CATALOG, TAGS, MANIFEST, BLOB, UPLOAD, UPLOAD_CHUNK, UNKNOWN = (
    "base",
    "catalog",
    "tags",
    "manifest",
    "blob",
    "upload",
    "upload_chunk",
    "unknown",
)

# distribution's reference.TagRegexp and DigestRegexp (Go's \w is ASCII).
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}"
# The upload UUID route variable: [a-zA-Z0-9-_.=]+
_UUID = r"[a-zA-Z0-9\-_.=]+"
_NAME_GROUP = f"({_NAME.pattern})"

# In the registry's order: the first that matches decides.
_REPOSITORY_ROUTES = (
    (TAGS, re.compile(rf"/v2/{_NAME_GROUP}/tags/list")),
    (MANIFEST, re.compile(rf"/v2/{_NAME_GROUP}/manifests/(?:{_TAG}|{_DIGEST})")),
    (BLOB, re.compile(rf"/v2/{_NAME_GROUP}/blobs/{_DIGEST}")),
    (UPLOAD, re.compile(rf"/v2/{_NAME_GROUP}/blobs/uploads/")),
    (UPLOAD_CHUNK, re.compile(rf"/v2/{_NAME_GROUP}/blobs/uploads/{_UUID}")),
)

_BY_METHOD = {
    "GET": frozenset({act.PULL}),
    "HEAD": frozenset({act.PULL}),
    "POST": frozenset({act.PULL, act.PUSH}),
    "PUT": frozenset({act.PULL, act.PUSH}),
    "PATCH": frozenset({act.PULL, act.PUSH}),
    "DELETE": frozenset({act.DELETE}),
}
_CATALOG_REQUEST = ResourceRequest("registry", "catalog", frozenset({act.ALL}))


@dataclass(frozen=True)
class RequiredAccess:
    """The route a request matched and the access its token must carry (possibly none)."""

    route: str
    requests: tuple[ResourceRequest, ...] = ()
    # The repository the route names, if it names one.
    name: str | None = None

    def scopes(self) -> tuple[str, ...]:
        """The requests in scope syntax, as a token request would name them."""
        return tuple(f"{r.type}:{r.name}:{','.join(act.ordered(r.actions))}" for r in self.requests)


def _decoded_path(raw_path: str) -> str | None:
    """The path as the registry's router sees it, or None if it would not route it as is."""
    try:
        path = unquote(raw_path, errors="strict")
    except UnicodeDecodeError:
        return None
    if "%" in raw_path and re.search(r"%(?![0-9A-Fa-f]{2})", raw_path):
        return None  # Go refuses a malformed escape (400)
    segments = path.split("/")
    # gorilla/mux redirects an unclean path (path.Clean) before any handler runs.
    if "" in segments[1:-1] or "." in segments or ".." in segments:
        return None
    return path


def _from_repository(query: str) -> str | None:
    """The first ``from`` of the query (Go's ``FormValue``), if it names a repository."""
    if "from=" not in query:
        return None
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    for key, value in pairs:
        if key == "from":
            return value if value and is_valid_name(value) else None
    return None


def required_access(method: str, uri: str) -> RequiredAccess:
    """What the registry requires for ``method`` on ``uri`` (path and query, as sent)."""
    raw_path, _, query = uri.partition("?")
    path = _decoded_path(raw_path)
    if path is None or not path.startswith("/v2/"):
        return RequiredAccess(UNKNOWN)
    if path == "/v2/":
        return RequiredAccess(BASE)
    if path == "/v2/_catalog":
        return RequiredAccess(CATALOG, (_CATALOG_REQUEST,))
    for route, pattern in _REPOSITORY_ROUTES:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        name = match.group(1)
        if not is_valid_name(name):  # longer than the registry accepts
            return RequiredAccess(UNKNOWN)
        actions = _BY_METHOD.get(method)
        if actions is None:
            return RequiredAccess(route, (), name)
        requests = [ResourceRequest("repository", name, actions)]
        source = _from_repository(query)
        if source is not None:
            if source == name:
                requests = [ResourceRequest("repository", name, actions | {act.PULL})]
            else:
                requests.append(ResourceRequest("repository", source, frozenset({act.PULL})))
        return RequiredAccess(route, tuple(requests), name)
    return RequiredAccess(UNKNOWN)
