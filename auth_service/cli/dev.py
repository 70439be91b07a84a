"""``auth-service dev``: the token endpoint alone, on Flask's development server.

Creates an example configuration if the config directory lacks one (users alice and admin, a
public repository ``public-image``), then serves on 127.0.0.1. Not for production: there, uWSGI
serves ``auth_service.wsgi`` behind nginx.
"""

from __future__ import annotations

from pathlib import Path

import click

from auth_service.cli.context import ConfigDirectory, or_fail, pass_config_dir
from auth_service.cli.init import DEV_SERVICE, EXAMPLE_USERS, create_missing_config

DEV_PORT = 5001


def create_example_config(config_dir: Path) -> None:
    """What ``dev`` and the local stack serve: the missing files, with the example users."""
    create_missing_config(config_dir, users=EXAMPLE_USERS, public=["public-image"])


@click.command("dev")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=DEV_PORT, show_default=True,
    help="Port on 127.0.0.1.",
)  # fmt: skip
@pass_config_dir
def dev(config_dir: ConfigDirectory, port: int) -> None:
    """Serve the token endpoint on Flask's development server.

    Creates an example configuration first if the directory lacks one: users alice and admin,
    whose passwords are printed once, and public-image, pullable by anyone.
    """
    or_fail(lambda: create_example_config(config_dir.path))
    app = config_dir.app()
    services = config_dir.service(app).settings.services
    click.echo(
        f"try: curl -u alice:PASSWORD 'http://127.0.0.1:{port}/v2/token?"
        f"service={services[0] if services else DEV_SERVICE}&scope=repository:alice/app:pull'"
    )
    app.run(host="127.0.0.1", port=port)
