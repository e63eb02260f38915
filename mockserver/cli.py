"""The `stemmock` command. Each flag maps 1:1 onto a MockConfig field and reads STEMMOCK_<FLAG> too."""

from __future__ import annotations

import importlib
import logging
import sys
from typing import ClassVar

import click
import uvicorn

from .app import MockApp, create_app
from .config import ConfigError, MockConfig, load_config
from .spec import SpecError

EXIT_BAD_CONFIG = 2


def run(config: MockConfig, log_level: str = "info", app: MockApp | None = None) -> None:
    """Serve the mock (`app`, or one built from `config`) on config.host:config.port until interrupted."""
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    uvicorn.run(app or create_app(config), host=config.host, port=config.port, log_level=log_level,
                access_log=False)


class _Commands(click.Group):
    """`stemmock`'s commands; those of the contract kit are imported only when run, so `serve` starts lean."""

    KIT: ClassVar[dict[str, str]] = {"check-client": "contracts.check_client"}  # name -> module with `command`

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.KIT])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.KIT:
            return importlib.import_module(self.KIT[cmd_name]).command  # type: ignore[no-any-return]
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings={"auto_envvar_prefix": "STEMMOCK", "help_option_names": ["-h", "--help"]})
def main() -> None:
    """stemmock: local MusicAPI and api.box, from their OpenAPI specs."""


@main.command()
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to bind (default 8080; 0 picks a free one).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None, help="YAML config file.")
@click.option("--seed", type=int, default=None, help="Seed for ids and random faults (default 0).")
@click.option("--clock", type=click.Choice(["real", "manual"]), default=None, help="Time source (default real).")
@click.option("--public-url", default=None, help="Origin used in the file URLs the mock hands out.")
@click.option("--log-level", default="info", type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(host: str | None, port: int | None, config_path: str | None, seed: int | None, clock: str | None,
          public_url: str | None, log_level: str) -> None:
    """Serve MusicAPI and api.box on one port."""
    try:
        config = load_config(config_path, host=host, port=port, seed=seed, clock=clock, public_url=public_url)
        app = create_app(config)  # fail here, with a readable message, on a bad spec or config
    except (ConfigError, SpecError) as exc:
        click.echo(f"stemmock: {exc}", err=True)
        sys.exit(EXIT_BAD_CONFIG)
    run(config, log_level, app)  # the app just built: loading the specs twice doubled start-up
