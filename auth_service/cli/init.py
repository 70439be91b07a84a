"""``auth-service init``: a working configuration in an empty config directory.

Creates whatever is missing: ``config.py``, a signing key and its certificate, ``users.json``
with a first user whose random password is printed once, and ``repositories.json``. Files that
exist are never touched, so running it twice is harmless. Compose's one-time ``init`` service
runs it; ``auth-service dev`` and the local stack create their example configuration with it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from auth_service.cli.context import ConfigDirectory, or_fail, pass_config_dir
from auth_service.files import users_edit
from auth_service.files.atomic import write_atomic
from auth_service.files.settings import CONFIG_FILE, ENV_PREFIX, REPOSITORIES_FILE, USERS_FILE
from auth_service.tokens.keys import write_signing_pair

DEV_SERVICE = "token-service-dev"
DEV_ISSUER = "token-service-dev"
KEY_FILE, CERT_FILE = "token.key", "token.crt"
CERT_DAYS = 365
# Settings and the public repositories are no secret; the key and users.json are written 0600
# by the code that writes them for every command (tokens.keys, files.users_edit).
PUBLIC_FILE_MODE = 0o644

CONFIG_TEMPLATE = '''"""Written by `auth-service init`; the README lists every setting."""

ISSUER = {issuer!r}
KEY_PATH = {key_file!r}
CERT_PATH = {cert_file!r}
SERVICE = {service!r}
TOKEN_LIFETIME = 900
ANONYMOUS_ACCESS = True
'''

# A deployment starts with its administrator only.
FIRST_USERS: Mapping[str, Mapping[str, Any]] = {
    "admin": {"repositories": {"*": ["*"]}, "catalog": True},
}
# For trying it out (`auth-service dev`, the local stack): a user with a repository of her own.
EXAMPLE_USERS: Mapping[str, Mapping[str, Any]] = {
    "alice": {"repositories": {"alice/app": ["pull", "push"], "*": ["pull"]}},
    **FIRST_USERS,
}


def create_missing_config(
    config_dir: Path,
    *,
    issuer: str = DEV_ISSUER,
    service: str = DEV_SERVICE,
    users: Mapping[str, Mapping[str, Any]] = FIRST_USERS,
    public: Sequence[str] = (),
    echo: Callable[[str], None] = click.echo,
) -> None:
    """Create the missing files of a working configuration in ``config_dir``, saying what it
    created through ``echo``, and each new user's password once.

    Raises FileExistsError if only one of the key and the certificate exists: the other can't
    be made to match it.
    """
    config_dir.mkdir(parents=True, exist_ok=True)
    config_py = config_dir / CONFIG_FILE
    if not config_py.exists():
        text = CONFIG_TEMPLATE.format(
            issuer=issuer, service=service, key_file=KEY_FILE, cert_file=CERT_FILE
        )
        write_atomic(config_py, text.encode(), PUBLIC_FILE_MODE)
        echo(f"created {config_py}")

    key_path, cert_path = config_dir / KEY_FILE, config_dir / CERT_FILE
    if key_path.exists() != cert_path.exists():
        present, absent = (key_path, cert_path) if key_path.exists() else (cert_path, key_path)
        raise FileExistsError(
            f"{present} exists but {absent} doesn't; `auth-service keys generate --force` "
            "replaces both"
        )
    if not key_path.exists():
        # The certificate's CN is the issuer, so the two are easy to match up.
        write_signing_pair(key_path, cert_path, issuer, CERT_DAYS)
        echo(f"created {key_path} and {cert_path}")

    users_path = config_dir / USERS_FILE
    if not users_path.exists():
        cost = users_edit.default_cost(config_dir)
        passwords = {name: secrets.token_urlsafe(12) for name in users}

        def add_users(document: dict[str, Any]) -> dict[str, Any]:
            for name, entry in users.items():
                document = users_edit.add_user(
                    document,
                    name,
                    users_edit.hash_password(passwords[name].encode(), cost),
                    dict(entry.get("repositories", {})),
                    entry.get("groups", ()),
                    entry.get("catalog", False),
                )
            return document

        users_edit.update_users(users_path, add_users)
        for name, password in passwords.items():
            echo(f"created user {name!r} with password {password} (shown only now)")

    repositories_path = config_dir / REPOSITORIES_FILE
    if not repositories_path.exists():
        document = {"blacklist": False, "repositories": list(public)}
        text = json.dumps(document, indent=4) + "\n"
        write_atomic(repositories_path, text.encode(), PUBLIC_FILE_MODE)
        echo(f"created {repositories_path}")


@click.command("init")
@click.option(
    "--issuer",
    envvar=ENV_PREFIX + "ISSUER",
    default=DEV_ISSUER,
    show_default=True,
    show_envvar=True,
    help="ISSUER of a new config.py: the tokens' iss, which the registry checks.",
)
@click.option(
    "--service",
    envvar=ENV_PREFIX + "SERVICE",
    default=DEV_SERVICE,
    show_default=True,
    show_envvar=True,
    help="SERVICE of a new config.py: the registry's name, the tokens' aud.",
)
@pass_config_dir
def init(config_dir: ConfigDirectory, issuer: str, service: str) -> None:
    """Create what is missing in the config directory.

    Writes config.py, token.key (mode 0600) and its certificate token.crt, users.json (mode
    0600) with one user, admin, whose random password is printed once, and repositories.json
    (nothing public). Never touches a file that exists.
    """
    or_fail(lambda: create_missing_config(config_dir.path, issuer=issuer, service=service))
