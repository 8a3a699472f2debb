"""``python -m bench.bare_post PORT``: the framework ceiling of the order checkout bench.

A bare FastAPI application with one route, ``POST /v1/orders``, that validates the same
pydantic body as the order API's checkout (:class:`services.order.entrypoints.http.NewOrder`)
and answers 201 with a small JSON body. Nothing else: no middleware, no token check, no I/O.

It is served exactly as the order API is: :func:`services.kit.runtime.run` (uvloop, the
process's signal handling) and :func:`services.kit.runtime.serve_http` (uvicorn with
httptools, one process, no access log), so the difference between this and a real order
is the work of placing it, not the server.
"""

from __future__ import annotations

import sys
from typing import Any
from uuid import uuid4

from fastapi import FastAPI

from services.kit.runtime import run, serve_http
from services.kit.settings import ServiceSettings
from services.order.entrypoints.http import NewOrder


def create_app() -> FastAPI:
    app = FastAPI(title="bench: bare POST", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/v1/orders", status_code=201)
    async def place(body: NewOrder) -> dict[str, Any]:
        return {"order_id": uuid4().hex, "status": "pending_payment", "lines": len(body.lines)}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m bench.bare_post PORT", file=sys.stderr)
        return 2
    settings = ServiceSettings(service_name="bench-bare-post", http_port=int(argv[0]))
    app = create_app()
    return run(settings, {"serve": lambda stop: serve_http(app, settings, stop)}, ["serve"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
