"""``python -m bench.room_load``: the room service under a join storm and a broadcast.

Needs the local stack (Postgres, Redis). Starts ``python -m services.room api`` as its own
process on a free port with a database and Redis namespace of its own, opens a live room,
then:

1. **Join storm**: ``--viewers`` viewers (10,000) join over HTTP within ``--seconds`` (10),
   on a fixed schedule (open loop: latency counts from when a join was due, so a server
   that falls behind shows it). Reports joins/s, p50/p99 latency, errors, and checks that
   presence counted every successful join.
2. **Broadcast**: ``--push-clients`` (1,000) WebSocket clients connect; the host pins a
   product; each client's delay from the pin request to its ``product_pinned`` message.
   Reports p50/p99/max and how many clients got it.

Everything stays on 127.0.0.1, every loop is bounded, and the server is always stopped.
Standalone: not part of ``python -m bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import uvloop
from rich.console import Console
from rich.table import Table
from websockets.asyncio.client import ClientConnection, connect

from bench.load import open_loop, percentile
from bench.procs import free_port, process_cpu, stop_process
from devstack.config import ROOT, StackConfig
from services.kit.identity import Role, TokenIssuer
from services.kit.scaffolding import throwaway_database
from services.kit.testing import unique
from services.room.settings import RoomSettings

DEFAULT_OUTPUT = ROOT / "artifacts" / "bench" / "room.json"
PINNED_SKU = "BENCH-SKU"


@dataclass(frozen=True)
class Options:
    postgres_dsn: str
    redis_url: str
    viewers: int = 10_000
    seconds: float = 10.0
    push_clients: int = 1_000
    http_connections: int = 64
    output: Path = DEFAULT_OUTPUT


@dataclass(frozen=True)
class Figures:
    joins_attempted: int
    joins_ok: int
    storm_seconds: float
    """From the first join due to the last answered."""
    joins_per_second: float
    join_p50_ms: float
    join_p99_ms: float
    join_errors: dict[str, int]
    server_cpu_ms_per_join: float
    client_cpu_ms_per_join: float
    """CPU the room API and this load generator spent per answered join (Linux only)."""
    concurrent_counted: int
    push_clients: int
    push_received: int
    broadcast_p50_ms: float
    broadcast_p99_ms: float
    broadcast_max_ms: float


@asynccontextmanager
async def room_api(dsn: str, redis_url: str, log: Path) -> AsyncIterator[tuple[str, int]]:
    """The room API as its own process; its base URL and pid while it runs."""
    port = free_port()
    env = {
        **os.environ,
        "ROOM_HTTP_PORT": str(port),
        "ROOM_POSTGRES_DSN": dsn,
        "ROOM_POSTGRES_POOL_MAX": "20",
        "ROOM_REDIS_URL": redis_url,
        "ROOM_REDIS_NAMESPACE": unique("room-bench"),
        "ROOM_PUSH_CHANNEL_PREFIX": unique("room-bench-push"),
        "ROOM_LOG_LEVEL": "WARNING",
    }
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - started once, not on a hot path
            [sys.executable, "-m", "services.room", "api"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(base_url, process, log)
        yield base_url, process.pid
    finally:
        stop_process(process)


async def _wait_ready(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"room api exited: see {log}")
            with suppress(httpx.HTTPError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"room api not ready after 60 s: see {log}")


def _auth(token: str) -> Mapping[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _open_room(client: httpx.AsyncClient, operator: str) -> str:
    room_id = unique("bench-room")
    body = {
        "room_id": room_id,
        "host_id": unique("host"),
        "title": "Bench",
        "cover_url": "https://cdn.example.com/bench.jpg",
        "channels": ["app", "h5", "mini_program"],
    }
    for method, path, payload in [
        ("POST", "/v1/rooms", body),
        ("POST", f"/v1/rooms/{room_id}/lineup", {"sku_id": PINNED_SKU}),
        ("POST", f"/v1/rooms/{room_id}/start", None),
    ]:
        response = await client.request(method, path, json=payload, headers=_auth(operator))
        response.raise_for_status()
    return room_id


async def _join_storm(
    client: httpx.AsyncClient, room_id: str, tokens: list[str], seconds: float, connections: int
) -> tuple[int, int, float, float, float, float, dict[str, int]]:
    """Joins due evenly over ``seconds``; at most ``connections`` in flight (the others wait
    in a semaphore, not in the HTTP client's pool, which scans its waiters per request)."""
    gate = asyncio.Semaphore(connections)

    async def join(_: int, seq: int) -> str:
        async with gate:
            response = await client.post(
                f"/v1/rooms/{room_id}/viewers/join",
                json={"channel": "app", "share_code": f"S{seq % 100}", "entry": "share_link"},
                headers=_auth(tokens[seq]),
            )
        response.raise_for_status()
        return "joined"

    started = time.perf_counter()
    sample = await open_loop(join, rate=len(tokens) / seconds, duration=seconds, warmup=0.0)
    elapsed = time.perf_counter() - started
    ok = sample.outcomes["joined"]
    return (
        len(tokens),
        ok,
        elapsed,
        ok / elapsed,
        percentile(sample.latencies_ms, 0.5),
        percentile(sample.latencies_ms, 0.99),
        dict(sample.errors),
    )


async def _listener(url: str) -> ClientConnection:
    ws = await connect(url, open_timeout=30, max_queue=None)
    json.loads(await ws.recv())  # the snapshot: the client is registered
    return ws


async def _await_pin(ws: ClientConnection, sent_at: float, within: float) -> float | None:
    """Milliseconds from the pin request to this client's product_pinned, or None."""
    deadline = sent_at + within
    while (remaining := deadline - time.perf_counter()) > 0:
        try:
            message = json.loads(await asyncio.wait_for(ws.recv(), remaining))
        except (TimeoutError, OSError):
            return None
        if message["type"] == "product_pinned":
            return (time.perf_counter() - sent_at) * 1000
    return None


async def _broadcast(
    client: httpx.AsyncClient, base_url: str, room_id: str, tokens: list[str], operator: str
) -> tuple[int, list[float]]:
    ws_base = "ws" + base_url.removeprefix("http")
    clients: list[ClientConnection] = []
    try:
        for start in range(0, len(tokens), 100):  # connect in waves of 100
            clients += await asyncio.gather(
                *(
                    _listener(f"{ws_base}/v1/rooms/{room_id}/live?access_token={token}")
                    for token in tokens[start : start + 100]
                )
            )
        sent_at = time.perf_counter()
        waiting = [asyncio.create_task(_await_pin(ws, sent_at, 10.0)) for ws in clients]
        pinned = await client.put(
            f"/v1/rooms/{room_id}/pin", json={"sku_id": PINNED_SKU}, headers=_auth(operator)
        )
        pinned.raise_for_status()
        delays = [d for d in await asyncio.gather(*waiting) if d is not None]
        return len(clients), delays
    finally:
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)


async def run(options: Options) -> Figures:
    issuer = TokenIssuer(RoomSettings())
    merchant = unique("bench-m")
    operator = issuer.mint("bench-operator", [Role.OPERATOR], merchant)
    viewers = [issuer.mint(f"v{i}", [Role.VIEWER], merchant) for i in range(options.viewers)]
    log = options.output.with_suffix(".server.log")
    async with (
        throwaway_database(options.postgres_dsn, "room_bench") as dsn,
        room_api(dsn, options.redis_url, log) as (base_url, server_pid),
        httpx.AsyncClient(
            base_url=base_url,
            timeout=30,
            limits=httpx.Limits(max_connections=options.http_connections),
        ) as client,
    ):
        room_id = await _open_room(client, operator)
        server_before, client_before = process_cpu(server_pid), process_cpu(os.getpid())
        attempted, ok, elapsed, rate, p50, p99, errors = await _join_storm(
            client, room_id, viewers, options.seconds, options.http_connections
        )
        server_cpu = (process_cpu(server_pid) or 0.0) - (server_before or 0.0)
        client_cpu = (process_cpu(os.getpid()) or 0.0) - (client_before or 0.0)
        stats = await client.get(f"/v1/rooms/{room_id}/viewers/stats", headers=_auth(operator))
        connected, delays = await _broadcast(
            client, base_url, room_id, viewers[: options.push_clients], operator
        )
    return Figures(
        joins_attempted=attempted,
        joins_ok=ok,
        storm_seconds=elapsed,
        joins_per_second=rate,
        join_p50_ms=p50,
        join_p99_ms=p99,
        join_errors=errors,
        server_cpu_ms_per_join=server_cpu * 1000 / max(ok, 1),
        client_cpu_ms_per_join=client_cpu * 1000 / max(ok, 1),
        concurrent_counted=int(stats.json()["concurrent"]),
        push_clients=connected,
        push_received=len(delays),
        broadcast_p50_ms=percentile(delays, 0.5),
        broadcast_p99_ms=percentile(delays, 0.99),
        broadcast_max_ms=max(delays, default=0.0),
    )


def render(figures: Figures, options: Options) -> Table:
    table = Table(title="room: join storm and broadcast")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("joins attempted", f"{figures.joins_attempted} in {options.seconds:g} s"),
        ("joins succeeded", f"{figures.joins_ok} in {figures.storm_seconds:.1f} s"),
        ("joins/s (answered)", f"{figures.joins_per_second:.0f}"),
        ("join latency p50 / p99", f"{figures.join_p50_ms:.1f} / {figures.join_p99_ms:.1f} ms"),
        ("join errors", json.dumps(figures.join_errors) if figures.join_errors else "none"),
        (
            "CPU per join: server / load generator",
            f"{figures.server_cpu_ms_per_join:.2f} / {figures.client_cpu_ms_per_join:.2f} ms",
        ),
        ("concurrent viewers counted (seen < timeout ago)", str(figures.concurrent_counted)),
        ("push clients", str(figures.push_clients)),
        ("received the pin", str(figures.push_received)),
        (
            "broadcast p50 / p99 / max",
            f"{figures.broadcast_p50_ms:.1f} / {figures.broadcast_p99_ms:.1f}"
            f" / {figures.broadcast_max_ms:.1f} ms",
        ),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def main(argv: list[str] | None = None) -> int:
    config = StackConfig()
    parser = argparse.ArgumentParser(prog="python -m bench.room_load", description=__doc__)
    parser.add_argument("--postgres-dsn", default=config.postgres_dsn("postgres"))
    parser.add_argument("--redis-url", default=config.redis_url)
    parser.add_argument("--viewers", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--push-clients", type=int, default=1_000)
    parser.add_argument("--http-connections", type=int, default=64)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    options = Options(
        postgres_dsn=args.postgres_dsn,
        redis_url=args.redis_url,
        viewers=args.viewers,
        seconds=args.seconds,
        push_clients=min(args.push_clients, args.viewers),
        http_connections=args.http_connections,
        output=args.output,
    )
    figures = uvloop.run(run(options))
    Console().print(render(figures, options))
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(asdict(figures), indent=2) + "\n")
    return 0 if figures.joins_ok and figures.push_received else 1


if __name__ == "__main__":
    sys.exit(main())
