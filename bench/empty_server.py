"""``python -m bench.empty_server PORT``: the framework ceiling's server.

One unary method, ``/bench.v1.Bench/Ping``, that answers an empty message with an empty
message, served by the same :func:`services.kit.grpc.start_grpc_server` as every service
(so the token check of the kit's interceptor runs on every call, as it does for Reserve)
and run by the same :func:`services.kit.runtime.run` (uvloop, signals, logging).
"""

from __future__ import annotations

import asyncio
import sys

import grpc

from services.kit.grpc import Context, current_caller, start_grpc_server
from services.kit.identity import TokenVerifier
from services.kit.runtime import run
from services.kit.settings import ServiceSettings

SERVICE = "bench.v1.Bench"
METHOD = f"/{SERVICE}/Ping"


async def _ping(request: bytes, context: Context) -> bytes:
    current_caller()  # what a real handler does first
    return b""


async def serve(settings: ServiceSettings, stop: asyncio.Event) -> None:
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Ping": grpc.unary_unary_rpc_method_handler(_ping)}
    )
    server, _ = await start_grpc_server(
        service=settings.service_name,
        address=f"{settings.grpc_host}:{settings.grpc_port}",
        verifier=TokenVerifier(settings),
        register=lambda s: s.add_generic_rpc_handlers((handler,)),
        service_names=[SERVICE],
    )
    await stop.wait()
    await server.stop(grace=2)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m bench.empty_server PORT", file=sys.stderr)
        return 2
    settings = ServiceSettings(service_name="bench-empty", grpc_port=int(argv[0]))
    return run(settings, {"serve": lambda stop: serve(settings, stop)}, ["serve"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
