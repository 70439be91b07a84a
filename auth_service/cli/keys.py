"""``auth-service keys ...``: a new signing key and certificate, and the JWKS of certificates.

Both work without a complete configuration (before the first key exists, or with files named
on the command line): they read ``config.py`` only for the paths they are not given.
"""

from __future__ import annotations

import stat
from pathlib import Path

import click

from auth_service.cli.context import (
    CommandsInOrder,
    ConfigDirectory,
    echo_json,
    or_fail,
    pass_config_dir,
)
from auth_service.files.settings import CONFIG_FILE
from auth_service.tokens.keys import configured_token_header, jwks, write_signing_pair


@click.group("keys", cls=CommandsInOrder)
def keys() -> None:
    """Make a signing key; print certificates as a JWKS."""


def _configured_paths(config_dir: ConfigDirectory) -> tuple[Path | None, Path | None]:
    """KEY_PATH and CERT_PATH of config.py, or (None, None) if there is no config.py."""
    if not config_dir.has_config_py():
        return None, None
    settings = config_dir.settings()
    return settings.key_path, settings.cert_path


@keys.command("generate")
@click.option("--key", "key_path", type=click.Path(path_type=Path), help="Default: KEY_PATH.")
@click.option("--cert", "cert_path", type=click.Path(path_type=Path), help="Default: CERT_PATH.")
@click.option("--name", default="registry-token-service", show_default=True, help="Certificate CN.")
@click.option(
    "--days", type=click.IntRange(1, 36500), default=365, show_default=True, help="Lifetime."
)
@click.option("--force", is_flag=True, help="Replace existing files.")
@pass_config_dir
def keys_generate(
    config_dir: ConfigDirectory,
    key_path: Path | None,
    cert_path: Path | None,
    name: str,
    days: int,
    force: bool,
) -> None:
    """Write a new signing key and its certificate.

    The key is EC P-256 (mode 0600), the certificate self-signed. Files replaced with --force
    keep their owner, group and mode, less any access for all users to the key.
    """
    if key_path is None or cert_path is None:
        configured_key, configured_cert = _configured_paths(config_dir)
        key_path, cert_path = key_path or configured_key, cert_path or configured_cert
        if key_path is None or cert_path is None:
            raise click.UsageError(f"give --key and --cert ({CONFIG_FILE} names neither)")
    cert = or_fail(lambda: write_signing_pair(key_path, cert_path, name, days, force))
    key_mode = stat.S_IMODE(key_path.stat().st_mode)
    click.echo(f"wrote {key_path} (mode {key_mode:04o}) and {cert_path}: CN={name}, ", nl=False)
    click.echo(f"valid until {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")


@keys.command("jwks")
@click.option(
    "--cert",
    "cert_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A PEM certificate or bundle. Repeatable (old and new, while rotating). "
    "Default: CERT_PATH.",
)
@pass_config_dir
def keys_jwks(config_dir: ConfigDirectory, cert_paths: tuple[Path, ...]) -> None:
    """Print the JWKS of certificates (registry 3's auth.token.jwks).

    A JSON document; each kid is the one the tokens carry with the configured TOKEN_HEADER.
    """
    if not cert_paths:
        configured = _configured_paths(config_dir)[1]
        if configured is None:
            raise click.UsageError(f"give --cert ({CONFIG_FILE} sets no CERT_PATH)")
        cert_paths = (configured,)
    token_header = or_fail(lambda: configured_token_header(config_dir.path))
    echo_json(or_fail(lambda: jwks(cert_paths, token_header)))
