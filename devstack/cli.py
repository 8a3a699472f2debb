"""``livecommerce`` (and ``python -m devstack``): drive the local stack.

Every failure is one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace

import httpx
from rich.console import Console
from rich.table import Table

from devstack import stack
from devstack.config import TEST_DATABASE, StackConfig
from devstack.install import StackError, card_font, chromium_binary
from services.kit.identity import Role, TokenIssuer
from services.kit.settings import ServiceSettings

console = Console(width=None if sys.stdout.isatty() else 110)


def _up(config: StackConfig, args: argparse.Namespace) -> int:
    started = stack.up(config)
    if not args.infra_only:
        stack.start_services(config)
    console.print("stack " + ("started" if started else "already running; ensured up"))
    _print_status(config)
    console.print(f"logs: {config.logs}   stop with: make down")
    return 0


def _down(config: StackConfig, _: argparse.Namespace) -> int:
    stopped = stack.down(config)
    console.print("stack stopped" if stopped else "stack was not running")
    return 0


def _status(config: StackConfig, _: argparse.Namespace) -> int:
    if not stack.status(config):
        console.print("stack is not running (make up)")
        return 0
    _print_status(config)
    return 0


def _print_status(config: StackConfig) -> None:
    table = Table("process", "state", "detail", title="local stack")
    for process in stack.status(config):
        table.add_row(process.name, process.state, process.description)
    console.print(table)
    urls = Table("endpoint", "address", title="where things are")
    urls.add_row("Postgres", config.postgres_dsn("<service>"))
    urls.add_row("Redis", config.redis_url)
    urls.add_row("Kafka bootstrap", config.kafka_bootstrap)
    for service in config.services:
        for key, value in service.env.items():
            if key.endswith("HTTP_PORT"):
                urls.add_row(f"{service.name} API docs", f"http://127.0.0.1:{value}/docs")
            elif key.endswith("GRPC_PORT"):
                urls.add_row(service.name, f"127.0.0.1:{value} (gRPC, reflection on)")
            elif key.endswith("METRICS_PORT"):
                urls.add_row(f"{service.name} metrics", f"http://127.0.0.1:{value}/metrics")
    console.print(urls)


def test_environment(config: StackConfig) -> dict[str, str]:
    """What the integration tests read to find the stack (see tests/conftest.py)."""
    return {
        "LIVECOMMERCE_TEST_POSTGRES_DSN": config.postgres_dsn(TEST_DATABASE),
        "LIVECOMMERCE_TEST_REDIS_URL": config.redis_url,
        "LIVECOMMERCE_TEST_KAFKA_BOOTSTRAP": config.kafka_bootstrap,
        "LIVECOMMERCE_TEST_KAFKA_PROFILE": config.kafka_profile,
        "LIVECOMMERCE_REQUIRE_STACK": "1",
    }


def _test(config: StackConfig, args: argparse.Namespace) -> int:
    chromium = chromium_binary()
    card_font()  # the referral tests draw cards with it
    with stack.running_stack(config):
        env = {**os.environ, **test_environment(config), "LIVECOMMERCE_CHROMIUM": str(chromium)}
        command = [sys.executable, "-m", "pytest", *args.pytest_args]
        return subprocess.run(command, env=env, check=False).returncode


def _bench(config: StackConfig, args: argparse.Namespace) -> int:
    with stack.running_stack(config):
        bench = subprocess.Popen([sys.executable, "-m", "bench", *args.bench_args], cwd=config.root)
        while True:
            try:
                return bench.wait()
            except KeyboardInterrupt:
                # Ctrl-C reached the bench too: wait while it stops its servers and drops
                # its database (subprocess.run would kill it after a quarter of a second)
                continue


def _demo(config: StackConfig, args: argparse.Namespace) -> int:
    from devstack.demo import run_demo
    from devstack.stream import StreamSize

    base = StreamSize.small() if args.small else StreamSize()
    overrides = {
        name: getattr(args, name)
        for name in ("viewers", "subscribers", "buyers", "units", "coupons", "claimers")
        if getattr(args, name) is not None
    }
    size = replace(base, **overrides)
    if size.units < 1 or size.buyers < 1 or size.viewers < max(10, size.buyers):
        raise StackError("demo sizes: units and buyers at least 1, viewers at least buyers")
    return run_demo(config, console, size)


def _sale(config: StackConfig, args: argparse.Namespace) -> int:
    from devstack.stream import StreamError, StreamSize, render_sale, run_sale

    if args.units < 1 or args.buyers < 1:
        raise StackError("sale sizes: --units and --buyers must be at least 1")
    size = replace(StreamSize(), units=args.units, buyers=args.buyers, viewers=args.buyers)
    try:
        result = asyncio.run(run_sale(size, console))
    except (StreamError, httpx.HTTPError) as error:
        raise StackError(f"the sale failed ({type(error).__name__}): {error}") from error
    render_sale(result, console)
    return 1 if result.oversold else 0


def _report(config: StackConfig, args: argparse.Namespace) -> int:
    from devstack.stream import ANALYTICS, StreamError, fetch_review

    try:
        review = asyncio.run(fetch_review(args.room, args.merchant))
    except (StreamError, httpx.HTTPError) as error:
        raise StackError(f"no review of room {args.room}: {error}") from error
    table = Table("figure", "value", title=f"review of room {args.room}")
    for name, value in review["headline"].items():
        table.add_row(name, str(value))
    console.print(table)
    base = f"{ANALYTICS}/v1/rooms/{args.room}/review"
    console.print(f"charts: {base}.html   every figure: {base}.csv   (merchant {args.merchant})")
    return 0


def _reconcile(config: StackConfig, _: argparse.Namespace) -> int:
    command = [sys.executable, "-m", "services.inventory", "reconcile"]
    env = {**os.environ, **config.service_env("inventory")}
    return subprocess.run(command, env=env, check=False).returncode


def _rebuild(config: StackConfig, args: argparse.Namespace) -> int:
    issuer = TokenIssuer(ServiceSettings())
    token = issuer.mint("cli", [Role.MERCHANT_ADMIN], args.merchant)
    answer = httpx.post(
        f"http://127.0.0.1:8101/v1/sales/{args.sale}/rebuild",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60.0,
    )
    if answer.status_code != 200:
        raise StackError(f"rebuild refused ({answer.status_code}): {answer.text[:300]}")
    found = answer.json()
    console.print(
        f"sale {args.sale} rebuilt in Redis from the event store; "
        + ("Redis and the store agree" if found["in_agreement"] else f"drift: {found['drifts']}")
    )
    return 0 if found["in_agreement"] else 1


def _smoke(config: StackConfig, _: argparse.Namespace) -> int:
    from devstack.demo import run_smoke

    return run_smoke(config, console)


def _token(_: StackConfig, args: argparse.Namespace) -> int:
    issuer = TokenIssuer(ServiceSettings())
    roles = [Role(r) for r in args.role]
    print(issuer.mint(args.subject, roles, args.merchant, ttl_seconds=args.ttl))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livecommerce", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start Postgres, Redis, the broker and the services")
    up.add_argument("--infra-only", action="store_true", help="only Postgres, Redis, broker")
    up.set_defaults(run=_up)
    commands.add_parser("down", help="stop everything the stack started").set_defaults(run=_down)
    commands.add_parser("status", help="each process and its state").set_defaults(run=_status)
    demo = commands.add_parser(
        "demo", help="run a whole scripted live stream end to end and check every invariant"
    )
    demo.add_argument("--small", action="store_true", help="a small stream (a minute or so)")
    for name, what in (
        ("viewers", "viewers who join"),
        ("subscribers", "start-reminder subscribers"),
        ("buyers", "buyers tapping the flash sale"),
        ("units", "units in the flash sale"),
        ("coupons", "coupons in the coupon rain"),
        ("claimers", "viewers claiming in the rain"),
    ):
        demo.add_argument(f"--{name}", type=int, default=None, help=what)
    demo.set_defaults(run=_demo)
    commands.add_parser(
        "smoke", help="the Foundation's quick smoke scenario (inventory only)"
    ).set_defaults(run=_smoke)
    sale = commands.add_parser(
        "sale", help="a flash-sale spike against the running stack: throughput and latency"
    )
    sale.add_argument("--units", type=int, default=100, help="units in the sale")
    sale.add_argument("--buyers", type=int, default=1000, help="buyers tapping at once")
    sale.set_defaults(run=_sale)
    report = commands.add_parser("report", help="print a room's post-stream review")
    report.add_argument("room", help="the room id")
    report.add_argument("--merchant", required=True, help="the room's merchant id")
    report.set_defaults(run=_report)
    commands.add_parser(
        "reconcile", help="compare Redis with the inventory event store for every live sale"
    ).set_defaults(run=_reconcile)
    rebuild = commands.add_parser("rebuild", help="rebuild a flash sale in Redis from events")
    rebuild.add_argument("sale", help="the sale (campaign) id")
    rebuild.add_argument("--merchant", required=True, help="the sale's merchant id")
    rebuild.set_defaults(run=_rebuild)
    test = commands.add_parser("test", help="run pytest against the running stack")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed to pytest")
    test.set_defaults(run=_test)
    bench = commands.add_parser(
        "bench",
        help="benchmark the reserve path and the checkout (arguments go to python -m bench)",
        add_help=False,  # --help too: it is python -m bench's
    )
    bench.set_defaults(run=_bench, bench_args=[])
    token = commands.add_parser("token", help="mint a development bearer token")
    token.add_argument("--subject", default="dev-user")
    token.add_argument(
        "--role", action="append", choices=[r.value for r in Role], default=[], help="repeatable"
    )
    token.add_argument("--merchant", default=None, help="merchant id (tenant)")
    token.add_argument("--ttl", type=int, default=3600, help="seconds")
    token.set_defaults(run=_token)
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; what follows ``test`` goes to pytest as written (``-m chaos``
    first included, which argparse's remainder would refuse) and ``bench``'s options go to
    python -m bench."""
    parser = _parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(raw)
    if args.command == "test":
        args.pytest_args = raw[raw.index("test") + 1 :]
    elif unknown:
        if args.command != "bench":
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.bench_args = unknown  # python -m bench's own options
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    config = StackConfig()
    run: Callable[[StackConfig, argparse.Namespace], int] = args.run
    try:
        return run(config, args)
    except StackError as error:
        print(f"livecommerce: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        if os.environ.get("LIVECOMMERCE_DEBUG"):
            raise
        print(
            f"livecommerce: {type(error).__name__}: {error} (LIVECOMMERCE_DEBUG=1 for the trace)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(
            "livecommerce: interrupted; run `make down` to stop what was started", file=sys.stderr
        )
        return 130
