"""Per-user namespaces over HTTP: carol's "${user}/*" lets her push to carol/*, not to dave/*."""

from __future__ import annotations

import jwt

from .conftest import fetch_token, http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def push_token(stack, repository: str) -> str:
    return fetch_token(stack, f"scope=repository:{repository}:pull,push", user="carol")


def test_push_to_own_namespace_not_to_another(stack):
    own = push_token(stack, "carol/app")
    other = push_token(stack, "dave/app")
    assert jwt.decode(own, options={"verify_signature": False})["access"] == [
        {"type": "repository", "name": "carol/app", "actions": ["pull", "push"]}
    ]
    assert jwt.decode(other, options={"verify_signature": False})["access"] == [
        {"type": "repository", "name": "dave/app", "actions": []}
    ]

    # The registry checks the token: a blob upload starts in her namespace only.
    status, headers, body = http("POST", f"{stack.url}/v2/carol/app/blobs/uploads/", bearer(own))
    assert status == 202, body
    assert "/v2/carol/app/blobs/uploads/" in headers["Location"]
    status, _, body = http("POST", f"{stack.url}/v2/dave/app/blobs/uploads/", bearer(other))
    assert status == 401, body
    # Her own token does not open another namespace either.
    status, _, _ = http("POST", f"{stack.url}/v2/dave/app/blobs/uploads/", bearer(own))
    assert status == 401


def test_nested_paths_in_own_namespace(stack):
    token = push_token(stack, "carol/tools/build")
    status, _, body = http(
        "POST", f"{stack.url}/v2/carol/tools/build/blobs/uploads/", bearer(token)
    )
    assert status == 202, body
