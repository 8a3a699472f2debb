"""``python -m bench.grpc_client ...``: one gRPC load-generating process; writes its
:class:`bench.load.Sample` as JSON to ``--output``.

The same client code for every gRPC figure: a channel from
:func:`services.kit.grpc.authenticated_channel` (a service token on every call), uvloop,
and the closed or open loop of :mod:`bench.load`. Only the method differs: the empty
``Ping`` of :mod:`bench.empty_server`, or ``InventoryService.Reserve`` with a new hold and
a new buyer on every call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import uvloop

from bench.empty_server import METHOD as PING
from bench.load import Call, Sample, closed_loop, open_loop
from livecommerce.inventory.v1 import inventory_pb2 as pb
from livecommerce.inventory.v1 import inventory_pb2_grpc
from services.kit.grpc import authenticated_channel
from services.kit.identity import TokenIssuer
from services.kit.runtime import tune_garbage_collector
from services.kit.settings import ServiceSettings

MODES = ("empty", "reserve")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.grpc_client")
    parser.add_argument("--target", required=True, help="host:port")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--merchant", default="")
    parser.add_argument("--sale", default="")
    parser.add_argument("--tag", required=True, help="makes this process's hold ids unique")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--rate", type=float, default=0.0, help="open loop at this rate")
    parser.add_argument("--start-at", type=float, default=0.0, help="wall clock (time.time)")
    parser.add_argument("--output", type=Path, required=True, help="where the sample goes")
    return parser


def _call(channel: grpc.aio.Channel, args: argparse.Namespace) -> Call:
    if args.mode == "empty":
        ping: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(PING)

        async def empty(worker: int, seq: int) -> str:
            await ping(b"")
            return "ok"

        return empty

    stub = inventory_pb2_grpc.InventoryServiceStub(channel)
    merchant, sale, tag = args.merchant, args.sale, args.tag

    async def reserve(worker: int, seq: int) -> str:
        hold = f"{tag}-{worker}-{seq}"
        reply = await stub.Reserve(
            pb.ReserveRequest(
                merchant_id=merchant, sale_id=sale, user_id=hold, quantity=1, hold_id=hold
            )
        )
        return "reserved" if reply.outcome == pb.ReserveReply.RESERVED else "sold_out"

    return reserve


async def drive(args: argparse.Namespace) -> Sample:
    token = TokenIssuer(ServiceSettings()).service_token("bench", ttl_seconds=3600)
    async with authenticated_channel(args.target, lambda: token) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=10)
        call = _call(channel, args)
        await call(0, -1)  # one call before the clock starts: connection and caches warm
        if args.start_at:
            await asyncio.sleep(max(0.0, args.start_at - time.time()))
        if args.rate > 0:
            return await open_loop(call, rate=args.rate, duration=args.duration, warmup=args.warmup)
        return await closed_loop(
            call, concurrency=args.concurrency, duration=args.duration, warmup=args.warmup
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # the services' collector tuning here too: a pause of the load generator is counted
    # as the server's latency, so it should pause no longer than the server does
    tune_garbage_collector(ServiceSettings())
    sample = uvloop.run(drive(args))
    args.output.write_text(json.dumps(sample.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
