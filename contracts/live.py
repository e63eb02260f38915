"""Run an ASGI app on a real uvicorn server, on a free loopback port, in a background thread."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import uvicorn


class LiveServer:
    """`with LiveServer(app) as server: server.url` — a real HTTP server for the block's duration."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 10.0) -> None:
        self.app = app
        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                     lifespan="on", loop="asyncio")
        self.server = uvicorn.Server(self.config)
        self.startup_timeout = startup_timeout
        self._thread: threading.Thread | None = None
        self.url = ""
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())

    def start(self) -> LiveServer:
        self._thread = threading.Thread(target=self._run, name="stemmock-live-server", daemon=True)
        self._thread.start()
        deadline = threading.Event()
        waited = 0.0
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread ended before it started listening")
            deadline.wait(0.01)
            waited += 0.01
            if waited > self.startup_timeout:
                raise RuntimeError(f"the server did not start within {self.startup_timeout} s")
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
