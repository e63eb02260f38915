"""The floor: a bare Starlette app with one route answering a fixed JSON body, on the mock's stack.

`python -m benchmarks.floor --port P` serves it with uvicorn on uvloop + httptools, like `stemmock serve`.
FLOOR_STATUS and FLOOR_BODY (the environment) set the answer, so each benchmark row's floor returns the
same bytes the mock returned for that request.
"""

from __future__ import annotations

import argparse
import os

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def make_app(status: int = 200, body: bytes = b"{}") -> Starlette:
    async def answer(request: Request) -> Response:
        await request.body()  # read the request like any endpoint does; never parsed
        return Response(body, status, media_type="application/json")

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])


app = make_app(int(os.environ.get("FLOOR_STATUS", "200")), os.environ.get("FLOOR_BODY", "{}").encode())

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False)
