"""A development instance in one command: ``python -m auth_service.cli.init [--init-only]``.

Creates whatever is missing in the config directory (config.py, a signing key and certificate,
users with fresh random passwords, printed once, and repositories.json), then serves the app with
Flask's development server on 127.0.0.1. Files that exist are never touched, so running it twice
is harmless. Not for production: there, uWSGI serves ``auth_service.wsgi``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

import bcrypt

from auth_service.files.atomic import write_atomic
from auth_service.files.settings import (
    CONFIG_FILE,
    REPOSITORIES_FILE,
    USERS_FILE,
    config_dir_from_env,
)
from auth_service.tokens.signer import generate_signing_pair

DEV_SERVICE = "token-service-dev"
DEV_ISSUER = "token-service-dev"
# The first users may well go to production (compose's one-time setup): the usual cost.
USER_BCRYPT_COST = 12
# Settings, the certificate and the public repositories are no secret (compose's registry must
# read the certificate); users.json holds password hashes and the key signs tokens: 0600, read by
# the service, which runs as the same user as `init` in compose.
PUBLIC_FILE_MODE = 0o644
PRIVATE_FILE_MODE = 0o600

CONFIG_TEMPLATE = '''"""Written by `auth-service init`; the README lists every setting."""

ISSUER = {issuer!r}
KEY_PATH = "token.key"
CERT_PATH = "token.crt"
SERVICE = {service!r}
TOKEN_LIFETIME = 900
ANONYMOUS_ACCESS = True
'''

DEV_GRANTS = {
    "alice": {"repositories": {"alice/app": ["pull", "push"], "*": ["pull"]}},
    "admin": {"repositories": {"*": ["*"]}, "catalog": True},
}


def ensure_dev_config(
    config_dir: Path,
    out=sys.stdout,
    issuer: str = DEV_ISSUER,
    service: str = DEV_SERVICE,
    grants: dict | None = None,
    public: tuple[str, ...] = ("public-image",),
) -> None:
    """Create the missing files of a working configuration in ``config_dir``."""
    config_dir.mkdir(parents=True, exist_ok=True)
    if not (config_dir / CONFIG_FILE).exists():
        text = CONFIG_TEMPLATE.format(issuer=issuer, service=service)
        write_atomic(config_dir / CONFIG_FILE, text.encode(), PUBLIC_FILE_MODE)
        print(f"created {config_dir / CONFIG_FILE}", file=out)
    key_path, cert_path = config_dir / "token.key", config_dir / "token.crt"
    if not key_path.exists() or not cert_path.exists():
        key_pem, cert_pem = generate_signing_pair(issuer, days=365)
        write_atomic(key_path, key_pem, PRIVATE_FILE_MODE)
        write_atomic(cert_path, cert_pem, PUBLIC_FILE_MODE)
        print(f"created {key_path} and {cert_path}", file=out)
    if not (config_dir / USERS_FILE).exists():
        users = {}
        for name, user_grants in (DEV_GRANTS if grants is None else grants).items():
            password = secrets.token_urlsafe(12)
            pass_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt(USER_BCRYPT_COST)).decode()
            users[name] = {"pass_hash": pass_hash, **user_grants}
            print(f"created user {name!r} with password {password} (shown only now)", file=out)
        users_json = json.dumps(users, indent=4).encode()
        write_atomic(config_dir / USERS_FILE, users_json, PRIVATE_FILE_MODE)
    if not (config_dir / REPOSITORIES_FILE).exists():
        document = {"blacklist": False, "repositories": list(public)}
        repositories_json = json.dumps(document, indent=4).encode()
        write_atomic(config_dir / REPOSITORIES_FILE, repositories_json, PUBLIC_FILE_MODE)
        print(f"created {config_dir / REPOSITORIES_FILE}", file=out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5001, help="port on 127.0.0.1 (5001)")
    parser.add_argument(
        "--init-only",
        action="store_true",
        help="only create the missing files, with one user, admin (ISSUER and SERVICE from "
        "AUTH_SERVICE_ISSUER and AUTH_SERVICE_SERVICE if set), then exit",
    )
    args = parser.parse_args(argv)
    config_dir = config_dir_from_env()
    ensure_dev_config(
        config_dir,
        issuer=os.environ.get("AUTH_SERVICE_ISSUER", DEV_ISSUER),
        service=os.environ.get("AUTH_SERVICE_SERVICE", DEV_SERVICE),
        # A deployment starts with its administrator only; the example users are for trying out.
        grants={"admin": DEV_GRANTS["admin"]} if args.init_only else None,
        public=() if args.init_only else ("public-image",),
    )
    if args.init_only:
        return

    from auth_service import create_app

    app = create_app({"CONFIG_DIR": config_dir})
    print(
        f"try: curl -u alice:PASSWORD 'http://127.0.0.1:{args.port}/v2/token?"
        f"service={DEV_SERVICE}&scope=repository:alice/app:pull,push'"
    )
    app.run(host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
