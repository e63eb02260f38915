"""The `stemmock` command. Each flag maps 1:1 onto a MockConfig field and reads STEMMOCK_<FLAG> too."""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import sys
from typing import Any, ClassVar

import click
import uvicorn

from .app import MockApp, create_app
from .config import ConfigError, MockConfig, config_from_dict, load_config
from .spec import SpecError
from .version import __version__

EXIT_BAD_CONFIG = 2
WORKER_CONFIG = "STEMMOCK_WORKER_CONFIG"  # the config, as JSON, handed to worker processes
WORKER_LOG_LEVEL = "STEMMOCK_WORKER_LOG_LEVEL"


def run(config: MockConfig, log_level: str = "info", app: MockApp | None = None, workers: int = 1) -> None:
    """Serve the mock (`app`, or one built from `config`) on config.host:config.port until interrupted.

    With `workers` > 1 each worker process builds its own app from `config` (passed on in the environment)
    and they share the listening socket and the store.
    """
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    _access_log(config)
    http = _bounded_protocol(config)
    if workers > 1:
        os.environ[WORKER_CONFIG] = json.dumps(dataclasses.asdict(config))
        os.environ[WORKER_LOG_LEVEL] = log_level  # the workers journal tracebacks only at debug, as one process does
        uvicorn.run("mockserver.cli:worker_app", factory=True, workers=workers, host=config.host, port=config.port,
                    log_level=log_level, access_log=False, http=http)
        return
    app = app or create_app(config)
    app.freeze_heap = True
    uvicorn.run(app, host=config.host, port=config.port, log_level=log_level, access_log=False, http=http)


def _access_log(config: MockConfig) -> None:
    """`--access-log` prints its lines whatever the server's log level, as uvicorn's own access log does."""
    if config.access_log:
        logging.getLogger("stemmock.access").setLevel(logging.INFO)


def _bounded_protocol(config: MockConfig) -> Any:
    """uvicorn's httptools protocol with the request head bounded (see mockserver.protocol), else uvicorn's own."""
    try:
        from .protocol import BoundedHttpToolsProtocol, head_bound
    except ImportError:  # httptools is not installed: h11 bounds a head itself (16 KiB)
        return "auto"
    BoundedHttpToolsProtocol.max_head_bytes = head_bound(config.limits.max_header_bytes)
    return BoundedHttpToolsProtocol


def worker_app() -> MockApp:
    """The app of one worker process of `stemmock serve --workers N`."""
    level = os.environ.get(WORKER_LOG_LEVEL, "info").upper()
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    config = config_from_dict(json.loads(os.environ[WORKER_CONFIG]))
    _access_log(config)
    _bounded_protocol(config)  # this process's protocol class gets the bound too
    app = create_app(config)
    app.freeze_heap = True
    return app


class _Commands(click.Group):
    """`stemmock`'s commands; those of the contract kit are imported only when run, so `serve` starts lean."""

    KIT: ClassVar[dict[str, str]] = {"check-client": "contracts.check_client", "proxy": "contracts.proxy.cli",
                                      "examples": "contracts.proxy.recording"}  # name -> module with `command`

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.KIT])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.KIT:
            return importlib.import_module(self.KIT[cmd_name]).command  # type: ignore[no-any-return]
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings={"auto_envvar_prefix": "STEMMOCK", "help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="stemmock", message="%(prog)s %(version)s")
def main() -> None:
    """stemmock: local MusicAPI and api.box, from their OpenAPI specs."""


@main.command()
@click.option("--host", envvar="STEMMOCK_HOST", show_envvar=True,
              default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", envvar="STEMMOCK_PORT", show_envvar=True,
              type=int, default=None, help="Port to bind (default 8080; 0 picks a free one).")
@click.option("--config", "config_path", envvar="STEMMOCK_CONFIG", show_envvar=True,
              type=click.Path(dir_okay=False), default=None, help="YAML config file.")
@click.option("--seed", envvar="STEMMOCK_SEED", show_envvar=True,
              type=int, default=None, help="Seed for ids and random faults (default 0).")
@click.option("--clock", envvar="STEMMOCK_CLOCK", show_envvar=True,
              type=click.Choice(["real", "manual"]), default=None, help="Time source (default real).")
@click.option("--public-url", envvar="STEMMOCK_PUBLIC_URL", show_envvar=True,
              default=None, help="Origin used in the file URLs the mock hands out.")
@click.option("--examples", envvar="STEMMOCK_EXAMPLES", show_envvar=True,
              type=click.Path(exists=True, dir_okay=False), default=None,
              help="An overlay of named examples (from `stemmock examples import`) for `Prefer: example=<name>`.")
@click.option("--store", envvar="STEMMOCK_STORE", show_envvar=True, default=None, metavar="memory|redis://host:port/db",
              help="Where state lives (default memory). Redis is shared by every worker and kept across restarts.")
@click.option("--workers", envvar="STEMMOCK_WORKERS", show_envvar=True,
              type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes sharing the port; more than one needs a shared --store.")
@click.option("--log-level", envvar="STEMMOCK_LOG_LEVEL", show_envvar=True,
              default="info", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              help="Server log level; with debug, the journal also shows the traceback of the mock's own errors.")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=None,
              envvar="STEMMOCK_MAX_BODY_BYTES", show_envvar=True,
              help="limits.max_body_bytes: larger bodies get the provider's 413 unread (default 1 MiB).")
@click.option("--max-header-bytes", type=click.IntRange(min=1), default=None,
              envvar="STEMMOCK_MAX_HEADER_BYTES", show_envvar=True,
              help="limits.max_header_bytes: all headers together (default 64 KiB).")
@click.option("--body-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              envvar="STEMMOCK_BODY_TIMEOUT", show_envvar=True,
              help="limits.body_timeout: seconds for an announced body (default 10).")
@click.option("--max-json-depth", type=click.IntRange(min=1), default=None,
              envvar="STEMMOCK_MAX_JSON_DEPTH", show_envvar=True,
              help="limits.max_json_depth: nesting levels of a JSON body (default 64).")
@click.option("--access-log/--no-access-log", envvar="STEMMOCK_ACCESS_LOG", show_envvar=True, default=None,
              help="One line per provider call: uvicorn's access format plus the operation and outcome (default off).")
def serve(host: str | None, port: int | None, config_path: str | None, seed: int | None, clock: str | None,
          public_url: str | None, examples: str | None, store: str | None, workers: int, log_level: str,
          max_body_bytes: int | None, max_header_bytes: int | None, body_timeout: float | None,
          max_json_depth: int | None, access_log: bool | None) -> None:
    """Serve MusicAPI and api.box on one port."""
    try:
        config = load_config(config_path, host=host, port=port, seed=seed, clock=clock, public_url=public_url,
                             store=store, examples=examples, access_log=access_log)
        given = (("max_body_bytes", max_body_bytes), ("max_header_bytes", max_header_bytes),
                 ("body_timeout", body_timeout), ("max_json_depth", max_json_depth))
        limits = {name: value for name, value in given if value is not None}
        if limits:
            config = config.replace(limits=dataclasses.replace(config.limits, **limits))
        if workers > 1 and config.store == "memory":
            raise ConfigError(f"--workers {workers} needs a store the workers share; add --store "
                              "redis://host:port/db (with memory, each worker would be a separate mock).")
        app = None
        if workers == 1:
            app = create_app(config)  # fail here, with a readable message, on a bad spec or config
        _check_store(config, app)
    except (ConfigError, SpecError) as exc:
        click.echo(f"stemmock: {exc}", err=True)
        sys.exit(EXIT_BAD_CONFIG)
    click.echo(banner(config, config_path, workers))
    run(config, log_level, app, workers)  # the app just built: loading the specs twice doubled start-up


def banner(config: MockConfig, config_path: str | None, workers: int = 1) -> str:
    """What `serve` prints once before serving: where each provider and the control plane answer, and how."""
    host = f"[{config.host}]" if ":" in config.host else config.host
    base = f"http://{host}:{config.port}" if config.port else f"http://{host}:<a free port, see below>"
    lines = [f"stemmock {__version__}",
             f"  MusicAPI       {base}  (POST /api/v1/sonic/vox, ...)",
             f"  api.box        {base}  (POST /api/v1/vocal-removal/generate, ...)",
             f"  control plane  {base}/__mock/  (specs: {base}/__mock/specs/control.yaml, health: /__mock/health)",
             f"  inspector      {base}/__mock/ui" + ("  (asks for the admin token)" if config.admin_token else ""),
             f"  clock {config.clock}, store {config.store}, seed {config.seed}, workers {workers}, "
             f"config {config_path or 'none (defaults)'}, access log {'on' if config.access_log else 'off'}"]
    return "\n".join(lines)


def _check_store(config: MockConfig, app: MockApp | None) -> None:
    """Fail before serving when a Redis store cannot be reached (ConfigError naming the URL).

    The app's own store is asked when the app is built; worker processes build theirs later, so a throw-away
    connection asks for them.
    """
    if config.store == "memory":
        return
    store: Any  # a RedisStore, which alone can be pinged
    if app is None:
        from .store import open_store

        store = open_store(config)  # a missing Redis client stops here, saying what to install
    else:
        store = app.state.mock.store
    import redis

    try:
        store.ping()
    except redis.RedisError as exc:
        raise ConfigError(f"store: {exc}") from None
    finally:
        if app is None:
            store.close()
