"""`stemmock proxy`: serve the validating proxy until interrupted, then print the drift report."""

from __future__ import annotations

import json
import logging
import signal
import sys

import click
import uvicorn

from mockserver.spec import PROVIDER_SPECS

from .server import ProxyConfig, create_proxy_app

EXIT_DRIFT = 1
EXIT_BAD_USAGE = 2


def parse_upstreams(values: tuple[str, ...]) -> dict[str, str]:
    """`NAME=URL` pairs -> {name: url}; raises click.BadParameter naming the bad one."""
    found: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or name not in PROVIDER_SPECS:
            raise click.BadParameter(f"{value!r} is not NAME=URL with NAME one of {', '.join(PROVIDER_SPECS)}.",
                                     param_hint="--upstream")
        if not url.startswith(("http://", "https://")):
            raise click.BadParameter(f"{url!r} is not an http(s) URL; expected e.g. {name}=https://api.example.com.",
                                     param_hint="--upstream")
        found[name] = url.rstrip("/")
    return found


@click.command("proxy")
@click.option("--upstream", "upstreams", multiple=True, required=True, metavar="NAME=URL",
              help="A provider and its real base URL (musicapi=https://api.musicapi.ai); repeat per provider.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=int, default=8080, show_default=True, help="Port to bind.")
@click.option("--record", type=click.Path(dir_okay=False), default=None,
              help="Append each exchange and callback as one JSON line (keys and secrets redacted).")
@click.option("--strict", is_flag=True, help="Exit 1 when any drift was seen.")
@click.option("--json", "as_json", is_flag=True, help="Print the report at exit as JSON.")
@click.option("--relay-callbacks", is_flag=True,
              help="Put this proxy's URL in callBackUrl / webhook_url, validate each callback, then forward it.")
@click.option("--public-url", default=None, help="This proxy's URL as the provider reaches it (for the relay).")
@click.option("--webhook-secret", default=None, envvar="STEMMOCK_PROXY_WEBHOOK_SECRET",
              help="MusicAPI's webhook secret for jobs that send none, to check callback signatures.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
              help="Seconds to wait for an upstream answer.")
@click.option("--log-level", default="warning", type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def command(upstreams: tuple[str, ...], host: str, port: int, record: str | None, strict: bool, as_json: bool,
            relay_callbacks: bool, public_url: str | None, webhook_secret: str | None, timeout: float,
            log_level: str) -> None:
    """Forward real traffic to the providers, validating both ways; report where they drift from the spec."""
    named = parse_upstreams(upstreams)
    if relay_callbacks and not public_url:
        click.echo("stemmock proxy: --relay-callbacks needs --public-url, the URL the provider can reach this "
                   "proxy at.", err=True)
        sys.exit(EXIT_BAD_USAGE)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    app = create_proxy_app(ProxyConfig(named, record=record, relay_callbacks=relay_callbacks, public_url=public_url,
                                       webhook_secret=webhook_secret, timeout=timeout))
    # No Server or Date header of uvicorn's own: the upstream's pass through as it sent them.
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                                           lifespan="on", server_header=False, date_header=False))
    for name, url in named.items():
        click.echo(f"stemmock proxy: {name} -> {url}", err=True)
    click.echo(f"stemmock proxy: listening on http://{host}:{port} (drift so far: /__mock/drift)", err=True)
    # uvicorn raises the stopping signal again once it has shut down; with these handlers in place that ends
    # nothing, so the report below is printed after Ctrl-C or SIGTERM alike.
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, lambda signum, frame: None)
    server.run()
    drift = app.state.proxy.log
    click.echo(json.dumps(drift.as_dict(), indent=2) if as_json else drift.table())
    if strict and drift.drift_count:
        sys.exit(EXIT_DRIFT)
