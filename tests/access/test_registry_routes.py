"""Proxy mode's mapping from method + URI to the access the registry requires, row by row
(registry/handlers/app.go: the route, then appendAccessRecords by method, then from=)."""

from __future__ import annotations

import pytest

from auth_service.access.registry_routes import (
    BASE,
    BLOB,
    CATALOG,
    MANIFEST,
    TAGS,
    UNKNOWN,
    UPLOAD,
    UPLOAD_CHUNK,
    required_access,
)

DIGEST = "sha256:" + "a" * 64
UUID = "3f1c2a8e-9b7d-4e21-8c55-0a1b2c3d4e5f"


def scopes(method: str, uri: str) -> tuple[str, ...]:
    return required_access(method, uri).scopes()


@pytest.mark.parametrize(
    ("method", "uri", "route", "expected"),
    [
        # /v2/: any token, any method
        ("GET", "/v2/", BASE, ()),
        ("HEAD", "/v2/", BASE, ()),
        ("POST", "/v2/", BASE, ()),
        # the catalog, whatever the method (only GET is served)
        ("GET", "/v2/_catalog", CATALOG, ("registry:catalog:*",)),
        ("GET", "/v2/_catalog?n=10&last=a", CATALOG, ("registry:catalog:*",)),
        ("DELETE", "/v2/_catalog", CATALOG, ("registry:catalog:*",)),
        # tags
        ("GET", "/v2/team/app/tags/list", TAGS, ("repository:team/app:pull",)),
        ("HEAD", "/v2/team/app/tags/list?n=5", TAGS, ("repository:team/app:pull",)),
        # manifests
        ("GET", "/v2/team/app/manifests/1.0", MANIFEST, ("repository:team/app:pull",)),
        ("HEAD", f"/v2/team/app/manifests/{DIGEST}", MANIFEST, ("repository:team/app:pull",)),
        ("PUT", "/v2/team/app/manifests/latest", MANIFEST, ("repository:team/app:pull,push",)),
        ("DELETE", f"/v2/team/app/manifests/{DIGEST}", MANIFEST, ("repository:team/app:delete",)),
        # blobs
        ("GET", f"/v2/team/app/blobs/{DIGEST}", BLOB, ("repository:team/app:pull",)),
        ("HEAD", f"/v2/team/app/blobs/{DIGEST}", BLOB, ("repository:team/app:pull",)),
        ("DELETE", f"/v2/team/app/blobs/{DIGEST}", BLOB, ("repository:team/app:delete",)),
        # uploads
        ("POST", "/v2/team/app/blobs/uploads/", UPLOAD, ("repository:team/app:pull,push",)),
        (
            "POST",
            f"/v2/team/app/blobs/uploads/?digest={DIGEST}",
            UPLOAD,
            ("repository:team/app:pull,push",),
        ),
        ("GET", f"/v2/team/app/blobs/uploads/{UUID}", UPLOAD_CHUNK, ("repository:team/app:pull",)),
        ("HEAD", f"/v2/team/app/blobs/uploads/{UUID}", UPLOAD_CHUNK, ("repository:team/app:pull",)),
        (
            "PATCH",
            f"/v2/team/app/blobs/uploads/{UUID}?_state=abc%3D%3D",
            UPLOAD_CHUNK,
            ("repository:team/app:pull,push",),
        ),
        (
            "PUT",
            f"/v2/team/app/blobs/uploads/{UUID}?_state=x&digest={DIGEST}",
            UPLOAD_CHUNK,
            ("repository:team/app:pull,push",),
        ),
        # cancelling an upload is a delete
        (
            "DELETE",
            f"/v2/team/app/blobs/uploads/{UUID}",
            UPLOAD_CHUNK,
            ("repository:team/app:delete",),
        ),
        # any other method on a repository route: a token, no access (the registry: 405)
        ("OPTIONS", "/v2/team/app/tags/list", TAGS, ()),
        ("TRACE", f"/v2/team/app/blobs/{DIGEST}", BLOB, ()),
        # unknown paths: a token, no access (the registry's 404)
        ("GET", f"/v2/team/app/referrers/{DIGEST}", UNKNOWN, ()),
        ("GET", "/v2/team/app/manifests/", UNKNOWN, ()),
        ("GET", "/v2/team/app/blobs/notadigest", UNKNOWN, ()),
        ("GET", "/v2/Team/", UNKNOWN, ()),
        ("GET", "/v2", UNKNOWN, ()),
        ("GET", "/other", UNKNOWN, ()),
    ],
)
def test_each_route_and_method(method, uri, route, expected):
    required = required_access(method, uri)
    assert required.route == route
    assert required.scopes() == expected


def test_host_and_port_names():
    required = required_access("GET", "/v2/localhost:5000/team/app/manifests/1")
    assert required.name == "localhost:5000/team/app"
    assert required.scopes() == ("repository:localhost:5000/team/app:pull",)
    assert scopes("PUT", "/v2/registry.example.org:443/x/manifests/1") == (
        "repository:registry.example.org:443/x:pull,push",
    )
    assert scopes("GET", "/v2/Registry.Example.org/x/tags/list") == (
        "repository:Registry.Example.org/x:pull",
    )


def test_nested_names_and_keywords_inside_names():
    assert scopes("GET", "/v2/a/b/c/d/tags/list") == ("repository:a/b/c/d:pull",)
    # A name may hold a route's keyword: the first route that matches the whole path decides.
    assert scopes("GET", "/v2/a/manifests/b/tags/list") == ("repository:a/manifests/b:pull",)
    assert scopes("GET", "/v2/x/blobs/y/manifests/z") == ("repository:x/blobs/y:pull",)
    assert required_access("GET", "/v2/x/tags/list/manifests/1").name == "x/tags/list"
    assert scopes("POST", "/v2/my_app/sub-dir/blobs/uploads/") == (
        "repository:my_app/sub-dir:pull,push",
    )


def test_mount_from_another_repository_needs_pull_there():
    uri = f"/v2/team/app/blobs/uploads/?mount={DIGEST}&from=other/base"
    assert scopes("POST", uri) == ("repository:team/app:pull,push", "repository:other/base:pull")
    # percent-encoded, in either order, and mount not needed
    uri = f"/v2/team/app/blobs/uploads/?from=other%2Fbase&mount={DIGEST}"
    assert scopes("POST", uri)[1] == "repository:other/base:pull"
    assert scopes("POST", "/v2/team/app/blobs/uploads/?from=other/base")[1] == (
        "repository:other/base:pull"
    )
    # host:port names, and the first from= only (Go's FormValue)
    uri = "/v2/team/app/blobs/uploads/?from=localhost:5000/x&from=evil/y"
    assert scopes("POST", uri) == (
        "repository:team/app:pull,push",
        "repository:localhost:5000/x:pull",
    )
    # from= the same repository: one entry
    assert scopes("POST", "/v2/team/app/blobs/uploads/?from=team/app") == (
        "repository:team/app:pull,push",
    )
    # an empty or invalid from= names no repository
    assert scopes("POST", "/v2/team/app/blobs/uploads/?from=") == ("repository:team/app:pull,push",)
    assert scopes("POST", "/v2/team/app/blobs/uploads/?from=../x") == (
        "repository:team/app:pull,push",
    )
    # the registry asks for it on every repository route, not only uploads
    assert scopes("GET", "/v2/team/app/tags/list?from=other/base") == (
        "repository:team/app:pull",
        "repository:other/base:pull",
    )


def test_the_path_is_matched_decoded_as_the_registry_matches_it():
    assert scopes("GET", "/v2/team%2Fapp/manifests/1") == ("repository:team/app:pull",)
    assert scopes("GET", "/v2/team/app/manifests/1?x=/v2/other/manifests/1") == (
        "repository:team/app:pull",
    )


@pytest.mark.parametrize(
    "uri",
    [
        "/v2//team/app/manifests/1",  # the registry's router redirects an unclean path
        "/v2/team/./app/manifests/1",
        "/v2/other/../team/app/manifests/1",
        "/v2/team/app/tags/list/",  # and a trailing slash it doesn't have
        "/v2/team/app/blobs/uploads",  # or lacks
        "/v2/_catalog/",
        "/v2/team%zz/manifests/1",  # a malformed escape: Go's 400
        "/v2/team%ff/manifests/1",  # not UTF-8
        "/v2/" + "a" * 256 + "/manifests/1",  # longer than a name may be
    ],
)
def test_paths_the_registry_does_not_route_as_they_are_need_no_access(uri):
    assert required_access("GET", uri).requests == ()
    assert required_access("GET", uri).route == UNKNOWN
