"""The flash-sale reserve path, measured against its ceilings and against the naive way.

Figures (all in one run, on one machine; see docs/benchmarks.md):

- **a** raw ceiling: ``redis-benchmark`` calling reserve.lua by EVALSHA, a new hold each call
- **b** framework ceiling: an empty unary gRPC call through the kit's server and client
- **c** Reserve through gRPC, served by ``python -m services.inventory grpc``
- **c80** the same at 80% of c's peak rate, open loop: the p99 a client sees there
- **b80** the empty call at 80% of b's peak rate, open loop: the framework's own p99 there
  (c80's floor, beside it; no target)
- **sold_out** Reserve through gRPC on a sold-out sale (answered from process memory)
- **d** naive: ``UPDATE stock SET qty = qty - $1 WHERE sku = $2 AND qty >= $1`` via asyncpg
- **e** the reserve adapter in-process: ``FlashSales.reserve`` (Redis decision + durable append)

Everything lives in its own database (``bench_<id>``, dropped at the end) and under its own
merchant id in Redis (its keys deleted at the end; Redis is shared, nothing is flushed).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import asyncpg
import grpc
from redis.asyncio import Redis

from bench.load import Call, Sample, closed_loop, merge, percentile
from bench.procs import (
    CpuWindow,
    batch_sizes,
    free_port,
    grpc_server,
    local_batch_sizes,
    mean_batches,
    postmaster_of,
    process_cpu,
    tree_cpu,
)
from services.inventory.adapters.redis_stock import RedisFlashStock, keys_of
from services.inventory.application.handlers import receive_stock
from services.inventory.bootstrap import Inventory, inventory
from services.inventory.domain.sale import (
    MAX_PER_USER_LIMIT,
    AllocateToSale,
    FlashSale,
    ReserveStock,
)
from services.inventory.domain.stock import ReceiveStock
from services.inventory.settings import InventorySettings
from services.kit.scaffolding import database_url

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "artifacts" / "bench" / "inventory.json"

FIGURES: dict[str, str] = {
    "a": "raw: redis-benchmark EVALSHA reserve.lua",
    "b": "framework: empty gRPC unary call",
    "c": "Reserve via gRPC (service process)",
    "c80": "Reserve via gRPC, open loop at 0.8 x c",
    "b80": "empty gRPC call, open loop at 0.8 x b",
    "sold_out": "Reserve via gRPC, sale sold out",
    "d": "naive: asyncpg UPDATE of one row",
    "e": "adapter: FlashSales.reserve in-process",
}
"""Every figure the report carries, in the order it is printed."""

NAIVE_UPDATE = "UPDATE stock SET qty = qty - $1 WHERE sku = $2 AND qty >= $1"
BIG_STOCK_FOR_RAW = 10**12


@dataclass(frozen=True)
class BenchOptions:
    postgres_dsn: str
    """Any database on the stack's Postgres; the bench creates (and drops) its own next to it."""
    redis_url: str
    concurrency: int = 64
    """In-flight calls for a, b, c and sold_out (redis-benchmark -c, gRPC client tasks)."""
    adapter_concurrency: int = 64
    """In-flight calls for d and e, from this process."""
    duration: float = 4.0
    warmup: float = 1.0
    grpc_clients: int = 1
    """gRPC client processes; the concurrency is split between them."""
    stock: int = 1_000_000
    """Units in each sale that must not sell out during the run (c and e)."""
    redis_requests: int = 0
    """redis-benchmark -n; 0: sized from a short calibration run to last ``duration``."""
    history: int = 50_000
    """Past holds (and their events) written before measuring, then ANALYZE: a database
    with a past, as a running service has (0: a brand-new database)."""
    rounds: int = 3
    """b, c, sold_out, d and e are measured this many times, interleaved; the best counts."""
    server_settings: dict[str, str] = field(default_factory=dict)
    """``INVENTORY_*`` settings for the served process (c, c80, sold_out), over its
    defaults: how a setting is compared against its default, one run each, alternated."""
    logs: Path = ROOT / "artifacts" / "bench" / "logs"
    progress: Callable[[str], None] = field(default=lambda _: None)


@dataclass
class Figure:
    key: str
    title: str
    concurrency: str
    throughput: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    ops: int = 0
    seconds: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    cpu_percent: dict[str, float] = field(default_factory=dict)
    """CPU used in the measured window, % of one core, per process (or group)."""
    mean_batch: dict[str, float] = field(default_factory=dict)
    """Reservations per Redis pipeline ("redis") and per group commit ("append")."""
    detail: str = ""
    skipped: str | None = None
    rounds: list[float] = field(default_factory=list)
    """The rate of every round when measured more than once (the best is reported)."""

    @property
    def cpu_us_per_op(self) -> dict[str, float]:
        """CPU microseconds each party spent per operation: steadier than the rate on a
        shared machine, since other tenants slow a figure down but do not add to it."""
        if self.throughput <= 0:
            return {}
        return {
            name: round(percent * 1e4 / self.throughput, 1)
            for name, percent in self.cpu_percent.items()
            if name not in ("other", "steal")
        }

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "cpu_us_per_op": self.cpu_us_per_op}

    @classmethod
    def of(
        cls, key: str, concurrency: str, sample: Sample, title: str | None = None, **extra: Any
    ) -> Figure:
        return cls(
            key=key,
            title=title if title is not None else FIGURES[key],
            concurrency=concurrency,
            throughput=round(sample.throughput, 1),
            p50_ms=round(percentile(sample.latencies_ms, 0.50), 3),
            p99_ms=round(percentile(sample.latencies_ms, 0.99), 3),
            ops=sample.ops,
            seconds=sample.seconds,
            outcomes=dict(sample.outcomes),
            errors=dict(sample.errors),
            **extra,
        )


@dataclass(frozen=True)
class Target:
    name: str
    expression: str
    value: float | None
    threshold: float
    at_most: bool = False
    """True for a ceiling (value <= threshold), False for a floor (value >= threshold)."""

    @property
    def passed(self) -> bool | None:
        if self.value is None:
            return None
        return self.value <= self.threshold if self.at_most else self.value >= self.threshold

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


@dataclass
class Report:
    meta: dict[str, Any]
    figures: dict[str, Figure]
    targets: list[Target]

    @property
    def missed(self) -> list[Target]:
        return [t for t in self.targets if t.passed is False]

    @property
    def unmeasured(self) -> list[Target]:
        """Targets whose figures were skipped (redis-benchmark missing): neither met nor
        missed."""
        return [t for t in self.targets if t.passed is None]

    def to_json(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "measurements": {key: figure.to_json() for key, figure in self.figures.items()},
            "targets": [t.to_json() for t in self.targets],
        }


def targets_of(figures: dict[str, Figure]) -> list[Target]:
    def rate(key: str) -> float | None:
        figure = figures.get(key)
        if figure is None or figure.skipped or figure.throughput <= 0:
            return None
        return figure.throughput

    def ratio(top: str, bottom: str) -> float | None:
        a, b = rate(top), rate(bottom)
        return round(a / b, 3) if a is not None and b is not None else None

    c80 = figures.get("c80")
    return [
        Target("reserve vs framework", "c / b", ratio("c", "b"), 0.7),
        Target("adapter vs naive", "e / d", ratio("e", "d"), 5.0),
        Target("adapter vs raw Redis", "e / a", ratio("e", "a"), 0.25),
        Target(
            "p99 of c at 80% of peak (ms)",
            "p99(c80)",
            c80.p99_ms if c80 is not None and not c80.skipped and c80.ops > 0 else None,
            25.0,
            at_most=True,
        ),
        Target("sold-out vs framework", "sold_out / b", ratio("sold_out", "b"), 0.9),
    ]


# -- the stage: a database, a merchant, the sales --------------------------------------------


@dataclass(frozen=True)
class Stage:
    merchant: str
    database: str
    dsn: str
    settings: InventorySettings
    reserve_sale: str = "sale-grpc"
    adapter_sale: str = "sale-adapter"
    sold_out_sale: str = "sale-soldout"
    raw_sale: str = "sale-raw"


async def _schedule(parts: Inventory, stage: Stage, sale_id: str, quantity: int) -> None:
    now = datetime.now(UTC)
    await parts.flash_sales.schedule(
        AllocateToSale(
            merchant_id=stage.merchant,
            sale_id=sale_id,
            sku_id="sku-bench",
            quantity=quantity,
            starts_at=now - timedelta(minutes=1),
            ends_at=now + timedelta(hours=2),
            per_user_limit=MAX_PER_USER_LIMIT,
        )
    )


async def _seed_history(pool: asyncpg.Pool, stage: Stage, holds: int) -> None:
    """Give the store a past: ``holds`` released holds of an earlier sale (another merchant
    id, never read by the bench), each with its event, then ANALYZE.

    A service's database is not empty: its planner statistics describe big ``events`` and
    ``flash_holds`` tables, so the group commit's lookups (stream heads, taken hold ids)
    use their indexes. On a new, never-analyzed database the plans cached while the tables
    were empty scan them sequentially, and each group commit costs more as they grow: that
    is measured with ``history=0``, and is not the steady state."""
    if holds <= 0:
        return
    merchant = f"{stage.merchant}-history"
    async with pool.acquire() as conn:
        async with conn.transaction():
            last = await conn.fetchval(
                "UPDATE event_position SET last = last + $1 RETURNING last", holds
            )
            await conn.execute(
                "INSERT INTO events (position, stream_id, version, event_id, event_type,"
                " aggregate_type, merchant_id, occurred_at, correlation_id, causation_id,"
                " payload)"
                " SELECT $1 + i, 'hold:' || $2 || ':h' || i, 1, gen_random_uuid(),"
                " 'StockReserved', 'hold', $2, now(), 'bench-history', 'bench-history',"
                " '\\x00'::bytea FROM generate_series(1, $3) AS i",
                last - holds,
                merchant,
                holds,
            )
            await conn.execute(
                "INSERT INTO flash_holds (merchant_id, hold_id, sale_id, user_id, quantity,"
                " state, expires_at, bucket, home_bucket, epoch)"
                " SELECT $1, 'h' || i, 'sale-history', 'u' || i, 1, 'released', now(), 0, 0, 1"
                " FROM generate_series(1, $2) AS i",
                merchant,
                holds,
            )
        await conn.execute("ANALYZE events; ANALYZE flash_holds; ANALYZE flash_sales")


async def _prepare(parts: Inventory, stage: Stage, stock: int, history: int) -> None:
    await _seed_history(parts.pool, stage, history)
    await receive_stock(ReceiveStock(stage.merchant, "sku-bench", 2 * stock + 1), parts.stock)
    await _schedule(parts, stage, stage.reserve_sale, stock)
    await _schedule(parts, stage, stage.adapter_sale, stock)
    await _schedule(parts, stage, stage.sold_out_sale, 1)
    taken = await parts.flash_sales.reserve(
        ReserveStock(stage.merchant, stage.sold_out_sale, "first-buyer", 1, "first-hold")
    )
    assert taken.reserved, "the one unit of the sold-out sale should have been reserved"


async def _forget_redis(redis: Redis, merchant: str) -> int:
    deleted = 0
    async for key in redis.scan_iter(match=f"{{fs:{merchant}:*", count=1000):
        deleted += int(await redis.unlink(key))
    return deleted


# -- (a) redis-benchmark -------------------------------------------------------------------


def _redis_benchmark_argv(redis_url: str, concurrency: int, requests: int) -> list[str]:
    url = urlsplit(redis_url)
    argv = [
        "redis-benchmark",
        "-h",
        url.hostname or "127.0.0.1",
        "-p",
        str(url.port or 6379),
        "-c",
        str(concurrency),
        "-n",
        str(requests),
        "-r",
        "100000000000",
        "--csv",
    ]
    if url.path.strip("/"):
        argv += ["--dbnum", url.path.strip("/")]
    if url.username and url.password:
        argv += ["--user", url.username]
    if url.password:
        argv += ["-a", url.password]
    return argv


def _parse_csv(output: str) -> tuple[float, float, float]:
    """rps, p50 ms, p99 ms from ``redis-benchmark --csv``."""
    rows = list(csv.DictReader(io.StringIO(output)))
    if not rows:
        raise RuntimeError(f"redis-benchmark printed no result: {output!r}")
    row = rows[-1]
    return float(row["rps"]), float(row["p50_latency_ms"]), float(row["p99_latency_ms"])


async def measure_raw(options: BenchOptions, stage: Stage, redis: Redis) -> Figure:
    key, conc = "a", str(options.concurrency)
    if shutil.which("redis-benchmark") is None:
        return Figure(key, FIGURES[key], conc, skipped="redis-benchmark not found (redis-tools)")
    now = datetime.now(UTC)
    sale = FlashSale(
        merchant_id=stage.merchant,
        sale_id=stage.raw_sale,
        sku_id="sku-raw",
        allocated=BIG_STOCK_FOR_RAW,
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=2),
        per_user_limit=MAX_PER_USER_LIMIT,
    )
    await RedisFlashStock(redis).load(sale, 1, [], closed=False)
    source = resources.files("services.inventory.adapters").joinpath("lua", "reserve.lua")
    sha = str(await redis.script_load(source.read_text()))
    now_ms = int(time.time() * 1000)
    command = [
        "EVALSHA",
        sha,
        "5",
        *keys_of(sale, 0).all,
        "raw-__rand_int__",
        "rawuser-__rand_int__",
        "1",
        str(now_ms),
        "0",
        "1",
    ]

    async def run(requests: int, cpu: CpuWindow | None) -> tuple[float, float, float, str]:
        argv = _redis_benchmark_argv(options.redis_url, options.concurrency, requests)
        process = await asyncio.create_subprocess_exec(
            *argv, *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        if cpu is not None:
            # the children this process has reaped: redis-benchmark alone, while it runs
            cpu.add("client", _children_cpu)
            await cpu.start()
        out, err = await process.communicate()
        if cpu is not None:
            await cpu.stop()
        if process.returncode != 0:
            raise RuntimeError(f"redis-benchmark failed: {err.decode(errors='replace')[-500:]}")
        rps, p50, p99 = _parse_csv(out.decode())
        password = urlsplit(options.redis_url).password
        shown = " ".join([*argv, *command])
        return rps, p50, p99, shown.replace(password, "***") if password else shown

    requests = options.redis_requests
    if requests <= 0:
        calibration, *_ = await run(max(2_000, options.concurrency * 50), None)
        requests = max(10_000, min(5_000_000, int(calibration * options.duration)))
    cpu = CpuWindow(redis=redis)
    holds_before = int(await redis.hlen(keys_of(sale, 0).holds))
    rps, p50, p99, shown = await run(requests, cpu)
    granted = int(await redis.hlen(keys_of(sale, 0).holds)) - holds_before
    return Figure(
        key,
        FIGURES[key],
        conc,
        throughput=round(rps, 1),
        p50_ms=p50,
        p99_ms=p99,
        ops=requests,
        seconds=round(requests / rps, 3) if rps else 0.0,
        outcomes={"reserved": granted, "other": requests - granted},
        cpu_percent=cpu.finish(),
        detail=shown.replace(sha, "<sha>"),
    )


# -- the figures that need the stage up: d and e in this process, b/c/sold_out/c80 via gRPC --


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _self_cpu() -> float:
    times = os.times()
    return times.user + times.system


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _server_env(
    stage: Stage, port: int, metrics_port: int, settings: dict[str, str]
) -> dict[str, str]:
    """The served process's environment: the bench's database, Redis and ports, the
    ``settings`` asked for, and no other ``INVENTORY_*`` variable of the caller's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVENTORY_")}
    env.update(settings)
    env.update(
        {
            "INVENTORY_POSTGRES_DSN": stage.dsn,
            "INVENTORY_REDIS_URL": stage.settings.redis_url,
            "INVENTORY_GRPC_HOST": "127.0.0.1",
            "INVENTORY_GRPC_PORT": str(port),
            "INVENTORY_METRICS_PORT": str(metrics_port),
        }
    )
    return env


@dataclass
class Servers:
    empty_port: int
    empty_pid: int
    inventory_port: int
    inventory_pid: int
    metrics_port: int


class Bench:
    """The stage, up: the database and its tables, the service's parts in this process,
    the naive pool, and the two gRPC server processes."""

    def __init__(
        self,
        options: BenchOptions,
        stage: Stage,
        parts: Inventory,
        postmaster: int | None,
        pool: asyncpg.Pool,
        servers: Servers,
    ) -> None:
        self.options = options
        self.stage = stage
        self.parts = parts
        self.pool = pool
        self.servers = servers
        self._postmaster = postmaster
        self._grpc_conc = f"{options.concurrency} ({max(1, options.grpc_clients)} client proc.)"

    def _postgres_cpu(self) -> dict[int, float] | None:
        return tree_cpu(self._postmaster) if self._postmaster is not None else None

    async def _in_process(self, key: str, call: Call, detail: str) -> Figure:
        options = self.options
        cpu = CpuWindow(
            {"client": _self_cpu, "postgres": self._postgres_cpu}, redis=self.parts.redis
        )

        async def window() -> None:
            await asyncio.sleep(options.warmup)
            await cpu.start()
            await asyncio.sleep(options.duration)
            await cpu.stop()

        watcher = asyncio.create_task(window())
        sample = await closed_loop(
            call,
            concurrency=options.adapter_concurrency,
            duration=options.duration,
            warmup=options.warmup,
        )
        await watcher
        return Figure.of(
            key, str(options.adapter_concurrency), sample, cpu_percent=cpu.finish(), detail=detail
        )

    async def naive(self) -> Figure:
        pool = self.pool

        async def update(worker: int, seq: int) -> str:
            status = await pool.execute(NAIVE_UPDATE, 1, "sku-hot")
            return "reserved" if status == "UPDATE 1" else "sold_out"

        detail = f"{NAIVE_UPDATE} (one hot row, autocommit, pool of {pool.get_max_size()})"
        return await self._in_process("d", update, detail)

    async def adapter(self, round_: int) -> Figure:
        reserve = self.parts.flash_sales.reserve
        merchant, sale = self.stage.merchant, self.stage.adapter_sale

        async def call(worker: int, seq: int) -> str:
            hold = f"e{round_}-{worker}-{seq}"
            reservation = await reserve(ReserveStock(merchant, sale, hold, 1, hold))
            return "reserved" if reservation.reserved else "sold_out"

        before = local_batch_sizes()
        figure = await self._in_process("e", call, "FlashSales.reserve, 1 unit, new buyer each")
        figure.mean_batch = mean_batches(before, local_batch_sizes())
        return figure

    async def empty(self, key: str, tag: str, rate: float = 0.0) -> Figure:
        """Empty calls to b's server: closed loop (b), or offered at ``rate`` in an open
        loop, as c80 offers Reserve (b80)."""
        sample, cpu = await self._clients(
            target=f"127.0.0.1:{self.servers.empty_port}",
            server_pid=self.servers.empty_pid,
            mode="empty",
            tag=tag,
            rate=rate,
        )
        concurrency = f"open loop, {rate:.0f}/s offered" if rate else self._grpc_conc
        detail = GRPC_DETAIL["b80"] if rate else PING_DETAIL
        return Figure.of(key, concurrency, sample, cpu_percent=cpu, detail=detail)

    async def reserve(self, key: str, sale: str, tag: str, rate: float = 0.0) -> Figure:
        metrics_url = f"http://127.0.0.1:{self.servers.metrics_port}/metrics"
        before = await batch_sizes(metrics_url)
        sample, cpu = await self._clients(
            target=f"127.0.0.1:{self.servers.inventory_port}",
            server_pid=self.servers.inventory_pid,
            mode="reserve",
            tag=tag,
            sale=sale,
            rate=rate,
        )
        concurrency = f"open loop, {rate:.0f}/s offered" if rate else self._grpc_conc
        return Figure.of(
            key,
            concurrency,
            sample,
            cpu_percent=cpu,
            mean_batch=mean_batches(before, await batch_sizes(metrics_url)),
            detail=GRPC_DETAIL[key],
        )

    async def _clients(
        self,
        *,
        target: str,
        server_pid: int,
        mode: str,
        tag: str,
        sale: str = "",
        rate: float = 0.0,
    ) -> tuple[Sample, dict[str, float]]:
        """Run the gRPC client processes side by side; their samples merged, and the CPU
        each party used in the measured window."""
        options = self.options
        count = max(1, options.grpc_clients)
        start_at = time.time() + CLIENT_START_SECONDS  # every client connected and warm by then
        processes: list[asyncio.subprocess.Process] = []
        outputs: list[Path] = []
        results = Path(tempfile.mkdtemp(prefix="bench-"))
        try:
            for index, concurrency in enumerate(_split(options.concurrency, count)):
                outputs.append(results / f"client-{index}.json")
                argv = [
                    sys.executable,
                    "-m",
                    "bench.grpc_client",
                    f"--target={target}",
                    f"--mode={mode}",
                    f"--merchant={self.stage.merchant}",
                    f"--sale={sale}",
                    f"--tag={tag}{index}",
                    f"--concurrency={concurrency}",
                    f"--duration={options.duration}",
                    f"--warmup={options.warmup}",
                    f"--rate={rate / count if rate else 0}",
                    f"--start-at={start_at}",
                    f"--output={outputs[-1]}",
                ]
                processes.append(
                    await asyncio.create_subprocess_exec(
                        *argv,
                        cwd=ROOT,
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.PIPE,
                    )
                )
            cpu = CpuWindow(
                {"server": lambda: process_cpu(server_pid), "postgres": self._postgres_cpu},
                redis=self.parts.redis,
            )

            async def window() -> None:
                await asyncio.sleep(max(0.0, start_at + options.warmup - time.time()))
                await cpu.start()
                await asyncio.sleep(options.duration)
                await cpu.stop()

            watcher = asyncio.create_task(window())
            timeout = CLIENT_START_SECONDS + options.warmup + options.duration + 60
            samples = []
            for process, output in zip(processes, outputs, strict=True):
                _, err = await asyncio.wait_for(process.communicate(), timeout=timeout)
                if process.returncode != 0:
                    raise RuntimeError(
                        f"gRPC client ({mode}) failed: {err.decode(errors='replace')[-800:]}"
                    )
                samples.append(Sample.from_json(json.loads(output.read_text())))
            await watcher
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            shutil.rmtree(results, ignore_errors=True)
        merged = merge(samples)
        # the clients measure their own CPU over the same window (they may be gone by the
        # time this process could read theirs)
        client = round(100 * merged.cpu_seconds / options.duration, 1)
        return merged, cpu.finish(client=client)


CLIENT_START_SECONDS = 1.5
PING_DETAIL = "bench.v1.Bench/Ping on start_grpc_server (token checked)"
GRPC_DETAIL = {
    "c": "python -m services.inventory grpc; 1 unit, new buyer each",
    "sold_out": "same server; the sale's one unit is gone",
    "c80": "latency from each call's due time",
    "b80": "latency from each call's due time; c80's floor, no target",
}


@asynccontextmanager
async def _naive_pool(stage: Stage, size: int) -> AsyncIterator[asyncpg.Pool]:
    setup = await asyncpg.connect(stage.dsn)
    try:
        await setup.execute("CREATE TABLE stock (sku text PRIMARY KEY, qty bigint NOT NULL)")
        await setup.execute("INSERT INTO stock VALUES ('sku-hot', $1)", BIG_STOCK_FOR_RAW)
    finally:
        await setup.close()
    pool = await asyncpg.create_pool(stage.dsn, min_size=size, max_size=size)
    assert pool is not None
    try:
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def _servers(options: BenchOptions, stage: Stage) -> AsyncIterator[Servers]:
    empty_port, inventory_port, metrics_port = free_port(), free_port(), free_port()
    env = _server_env(stage, inventory_port, metrics_port, options.server_settings)
    async with (
        grpc_server(
            [sys.executable, "-m", "bench.empty_server", str(empty_port)],
            port=empty_port,
            env=env,
            cwd=ROOT,
            log=options.logs / "empty_server.log",
        ) as empty,
        grpc_server(
            [sys.executable, "-m", "services.inventory", "grpc"],
            port=inventory_port,
            env=env,
            cwd=ROOT,
            log=options.logs / "inventory_grpc.log",
        ) as service,
    ):
        yield Servers(empty_port, empty.pid, inventory_port, service.pid, metrics_port)


# -- the run --------------------------------------------------------------------------------


async def _postmaster(conn: asyncpg.Connection) -> int | None:
    backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
    return postmaster_of(backend)


def _git_revision() -> str:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
            ).stdout.strip()
        except OSError:
            return ""

    revision = git("rev-parse", "--short", "HEAD")
    return f"{revision}+dirty" if revision and git("status", "--porcelain") else revision


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _meta(options: BenchOptions, stage: Stage) -> dict[str, Any]:
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_at_start": _load(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "git_revision": _git_revision(),
        "concurrency": options.concurrency,
        "adapter_concurrency": options.adapter_concurrency,
        "grpc_client_processes": max(1, options.grpc_clients),
        "duration_seconds": options.duration,
        "warmup_seconds": options.warmup,
        "rounds": options.rounds,
        "stock_per_sale": options.stock,
        "history_holds": options.history,
        "server_settings": dict(options.server_settings),
        "merchant": stage.merchant,
        "database": stage.database,
    }


def _best(rounds: Sequence[Figure]) -> Figure:
    """The round with the highest rate (noise on a shared machine only ever slows a
    figure down), carrying every round's rate."""
    best = max(rounds, key=lambda f: f.throughput)
    best.rounds = [f.throughput for f in rounds]
    return best


async def _measure(bench: Bench) -> dict[str, Figure]:
    options, stage = bench.options, bench.stage
    measured: dict[str, list[Figure]] = {}
    for round_ in range(options.rounds):
        label = f" (round {round_ + 1}/{options.rounds})" if options.rounds > 1 else ""
        options.progress(f"d: naive asyncpg conditional UPDATE{label}")
        measured.setdefault("d", []).append(await bench.naive())
        options.progress(f"e: FlashSales.reserve in-process{label}")
        measured.setdefault("e", []).append(await bench.adapter(round_))
        options.progress(f"b: empty gRPC call{label}")
        measured.setdefault("b", []).append(await bench.empty("b", f"b{round_}-"))
        options.progress(f"c: Reserve through gRPC{label}")
        figure = await bench.reserve("c", stage.reserve_sale, f"c{round_}-")
        measured.setdefault("c", []).append(figure)
        options.progress(f"sold_out: Reserve through gRPC on a sold-out sale{label}")
        figure = await bench.reserve("sold_out", stage.sold_out_sale, f"s{round_}-")
        measured.setdefault("sold_out", []).append(figure)
    figures = {key: _best(rounds) for key, rounds in measured.items()}
    rate = round(0.8 * figures["c"].throughput, 1)
    options.progress(f"c80: Reserve through gRPC, open loop at {rate:.0f}/s")
    if rate > 0:
        figures["c80"] = await bench.reserve("c80", stage.reserve_sale, "r-", rate=rate)
    else:
        figures["c80"] = Figure("c80", FIGURES["c80"], "-", skipped="c measured no rate")
    rate = round(0.8 * figures["b"].throughput, 1)
    options.progress(f"b80: empty gRPC call, open loop at {rate:.0f}/s")
    if rate > 0:
        figures["b80"] = await bench.empty("b80", "b80-", rate=rate)
    else:
        figures["b80"] = Figure("b80", FIGURES["b80"], "-", skipped="b measured no rate")
    return figures


async def run_bench(options: BenchOptions) -> Report:
    uid = uuid4().hex[:10]
    name = f"bench_{uid}"
    dsn = database_url(options.postgres_dsn, name)
    stage = Stage(
        merchant=f"bench-{uid}",
        database=name,
        dsn=dsn,
        settings=InventorySettings(
            postgres_dsn=dsn, redis_url=options.redis_url, postgres_pool_max=20
        ),
    )
    meta = _meta(options, stage)
    started = time.perf_counter()
    admin = await asyncpg.connect(options.postgres_dsn)
    figures: dict[str, Figure] = {}
    try:
        postmaster = await _postmaster(admin)
        meta["postgres"] = str(await admin.fetchval("SHOW server_version"))
        await admin.execute(f'CREATE DATABASE "{name}"')
        async with inventory(stage.settings) as parts:
            try:
                server = await parts.redis.info("server")
                meta["redis"] = str(server.get("redis_version", ""))
                options.progress(f"setting up (database {name}, merchant {stage.merchant})")
                await _prepare(parts, stage, options.stock, options.history)
                options.progress("a: redis-benchmark EVALSHA reserve.lua")
                figures["a"] = await measure_raw(options, stage, parts.redis)
                async with (
                    _naive_pool(stage, options.adapter_concurrency) as pool,
                    _servers(options, stage) as servers,
                ):
                    bench = Bench(options, stage, parts, postmaster, pool, servers)
                    figures.update(await _measure(bench))
            finally:
                await _forget_redis(parts.redis, stage.merchant)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    meta["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    meta["load_average_at_end"] = _load()
    ordered = {key: figures[key] for key in FIGURES if key in figures}
    return Report(meta=meta, figures=ordered, targets=targets_of(ordered))
