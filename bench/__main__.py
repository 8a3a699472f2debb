"""``python -m bench`` (``make bench``): the flash-sale reserve path against its ceilings.

Needs the local stack (``make bench`` starts it when it is not running). Prints a table and
writes artifacts/bench/inventory.json; exits 0 even when a target is missed (it is a
report), 1 with ``--strict``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop

from bench import order_checkout, promotion_claims, room_load
from bench.inventory_reserve import DEFAULT_OUTPUT, BenchOptions, Report, run_bench
from bench.report import bench_console, render, write_json
from devstack.config import StackConfig


def _parser() -> argparse.ArgumentParser:
    config = StackConfig()
    default = BenchOptions(postgres_dsn=config.postgres_dsn("postgres"), redis_url=config.redis_url)
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="The flash-sale reserve path against its ceilings (docs/benchmarks.md).",
    )
    add = parser.add_argument
    add("--postgres-dsn", default=default.postgres_dsn, help="the bench creates its DB beside")
    add("--redis-url", default=default.redis_url)
    add("--concurrency", type=int, default=default.concurrency, help="for a, b, c, sold_out")
    add("--adapter-concurrency", type=int, default=default.adapter_concurrency, help="d and e")
    add("--duration", type=float, default=default.duration, help="seconds measured per figure")
    add("--warmup", type=float, default=default.warmup, help="seconds before measuring")
    add("--rounds", type=int, default=default.rounds, help="interleaved rounds; best one kept")
    add("--grpc-clients", type=int, default=default.grpc_clients, help="client processes")
    add("--stock", type=int, default=default.stock, help="units of each sale that stays open")
    add("--history", type=int, default=default.history, help="past holds; 0: a new database")
    add("--redis-requests", type=int, default=default.redis_requests, help="redis-benchmark -n")
    add("--output", type=Path, default=DEFAULT_OUTPUT)
    add(
        "--server-setting",
        action="append",
        default=[],
        metavar="INVENTORY_NAME=VALUE",
        help="a setting of the served process over its default (repeatable)",
    )
    add("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser


def _server_settings(parser: argparse.ArgumentParser, pairs: Sequence[str]) -> dict[str, str]:
    settings: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.startswith("INVENTORY_"):
            parser.error(f"--server-setting wants INVENTORY_NAME=VALUE, got {pair!r}")
        settings[name] = value
    return settings


async def _until_stopped(options: BenchOptions) -> Report:
    """Run the bench; SIGTERM cancels it, like Ctrl-C, so that its servers, database and
    Redis keys are cleaned up on the way out."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_bench(options)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench``: the reserve path, the order checkout, the coupon claims and the
    room's join storm and broadcast; ``python -m bench inventory|orders|claims|room ...`` runs
    one suite alone (its own options: ``python -m bench orders --help``; ``inventory`` takes
    this command's)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    suites = {
        "orders": order_checkout.main,
        "claims": promotion_claims.main,
        "room": room_load.main,
    }
    if argv[:1] and argv[0] in suites:
        return suites[argv[0]](argv[1:])
    inventory_only = argv[:1] == ["inventory"]
    parser = _parser()
    args = parser.parse_args(argv[1:] if inventory_only else argv)
    server_settings = _server_settings(parser, args.server_setting)
    console = bench_console()
    options = BenchOptions(
        postgres_dsn=args.postgres_dsn,
        redis_url=args.redis_url,
        concurrency=args.concurrency,
        adapter_concurrency=args.adapter_concurrency,
        duration=args.duration,
        warmup=args.warmup,
        grpc_clients=args.grpc_clients,
        rounds=max(1, args.rounds),
        stock=args.stock,
        history=args.history,
        redis_requests=args.redis_requests,
        server_settings=server_settings,
        logs=args.output.parent / "logs",
        progress=lambda step: console.print(f"[dim]- {step}[/dim]"),
    )
    try:
        report = uvloop.run(_until_stopped(options))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print(
            "bench: interrupted; its servers, database and Redis keys were removed", file=sys.stderr
        )
        return 130
    render(report, console)
    path = write_json(report, args.output)
    console.print(f"written: {path}")
    if inventory_only:
        return 1 if args.strict and report.missed else 0
    orders_argv = ["--output", str(args.output.parent / "orders.json")]
    orders_status = order_checkout.main([*orders_argv, *(["--strict"] if args.strict else [])])
    console.print("[bold]coupon claims against the empty HTTP call and the raw Redis script[/bold]")
    claims_status = promotion_claims.main(
        [
            "--output",
            str(args.output.parent / "claims.json"),
            *(["--strict"] if args.strict else []),
        ]
    )
    console.print("[bold]the room: a join storm and a broadcast to push clients[/bold]")
    room_status = room_load.main(["--output", str(args.output.parent / "room.json")])
    failed = orders_status or claims_status or room_status
    return 1 if (args.strict and report.missed) or failed else 0


if __name__ == "__main__":
    sys.exit(main())
