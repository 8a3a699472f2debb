"""The order checkout, measured through the HTTP API against its framework ceiling and
against the naive single-database checkout (docs/benchmarks.md, "Order checkout").

Three systems, each at every level of concurrent buyers (16, 64, 256, 1,024 by default), on
one hot SKU, all in one run on one machine, interleaved level by level:

- **bare**: :mod:`bench.bare_post`, a bare FastAPI ``POST /v1/orders`` that validates the
  checkout's pydantic body and answers 201: the framework ceiling
- **naive**: :mod:`bench.naive_checkout`, one FastAPI process, one Postgres transaction per
  checkout (conditional stock update + order insert), on a database the bench creates
- **real**: ``POST /v1/orders`` on the order API of the running stack (idempotency key,
  PriceOrder on promotion, Reserve on inventory, OrderPlaced recorded), on a flash-sale
  campaign scheduled through promotion's HTTP API

Each level has two phases per system with a stock: **selling** (a closed loop for
``warmup + duration`` seconds on a fresh sale that cannot sell out in that time: orders
placed per second and their latency) and **sold out** (a fresh sale with ``1 /
sold_out_ratio`` as many units as requests, the requests fired by the same number of
buyers: answered requests per second, most of them answered 409 sold out). Every request is
a new buyer (its own viewer JWT) with a new ``Idempotency-Key``. After each phase the sale
is checked for oversell: inventory's durable counts (``GET /v1/sales/{id}``), or for the
naive checkout its stock row (never below zero) and its orders.

CPU per order is the CPU time the processes on the path used in the measured window
(``/proc`` of their pids; Postgres: the backends serving the path's databases; Redis:
``INFO cpu``), divided by the orders placed (or, in the sold-out phase, by the requests
answered). What runs off the path (the client, the stack's workers and broker, the rest of
the Postgres cluster) is reported beside it.

``python -m bench.order_checkout`` runs it standalone (``--help`` for the options).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from uuid import uuid4

import asyncpg
import httptools
import httpx
import uvloop
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from bench.inventory_reserve import (
    Figure,
    Report,
    Target,
    _git_revision,
    _load,
)
from bench.load import Call, Sample, closed_loop, error_label, percentile
from bench.naive_checkout import SCHEMA as NAIVE_SCHEMA
from bench.procs import (
    CpuWindow,
    Reading,
    _tail,
    free_port,
    postmaster_of,
    process_cpu,
    stop_process,
    tree_cpu,
)
from bench.report import bench_console, write_json
from devstack import stack as devstack_stack
from devstack.config import StackConfig
from services.kit.identity import Role, TokenIssuer
from services.kit.scaffolding import database_url
from services.kit.settings import ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "artifacts" / "bench" / "orders.json"
DEFAULT_LEVELS = (16, 64, 256, 1024)
QUICK_LEVELS = (4, 16)

SYSTEMS: dict[str, str] = {
    "bare": "bare FastAPI POST (framework ceiling)",
    "naive": "naive single-database checkout",
    "real": "POST /v1/orders on the order API",
}
PLACED = "placed"
SOLD_OUT = "sold_out"

PATH_PROCESSES = ("order-api", "inventory-grpc", "promotion-grpc")
"""The stack's processes a checkout goes through (with Postgres and Redis)."""
SIDE_PROCESSES = ("order-worker", "inventory-worker", "promotion-worker", "kafka")
"""What a checkout sets off afterwards (outbox relays, consumers, the broker): reported,
not counted as the checkout's CPU."""
PATH_PARTIES = {
    "bare": ("server",),
    "naive": ("server", "postgres"),
    "real": (*PATH_PROCESSES, "postgres", "redis"),
}

SELLING_UNITS = {"naive": 1_000_000_000, "real": 1_000_000}
"""Units of a selling phase's sale: more than any run can sell."""
LIST_PRICE = 9900
FLASH_PRICE = 5900
HOLD_TTL_SECONDS = 24 * 3600
"""The longest hold inventory allows: the payment deadlines of the (never paid) orders a run
places fire a day later, not while people work on the stack."""
STACK_READY_SECONDS = 120.0
"""How long the stack's services may take to answer (a service starting on a busy shared
machine applies its migrations first)."""
REQUEST_TIMEOUT_SECONDS = 120.0
"""A phase that has not finished this long after its end is abandoned (a hung server)."""


@dataclass(frozen=True)
class Endpoints:
    """The stack's HTTP APIs the real checkout is set up and measured through."""

    inventory: str = "http://127.0.0.1:8101"
    order: str = "http://127.0.0.1:8102"
    promotion: str = "http://127.0.0.1:8103"


@dataclass(frozen=True)
class OrderBenchOptions:
    postgres_dsn: str
    """Any database on the stack's Postgres; the naive checkout's is created beside it."""
    redis_url: str
    levels: tuple[int, ...] = DEFAULT_LEVELS
    """Concurrent buyers, one measurement of each system per level."""
    duration: float = 3.0
    """Seconds measured per selling phase."""
    warmup: float = 1.0
    """Seconds of the same load before a selling phase is measured."""
    sold_out_seconds: float = 2.0
    """A sold-out phase's size: about this many seconds at the selling rate."""
    sold_out_ratio: int = 5
    """Requests per unit in a sold-out phase."""
    systems: tuple[str, ...] = tuple(SYSTEMS)
    endpoints: Endpoints = field(default_factory=Endpoints)
    start_services: bool = True
    """Start the stack's service processes when they are not running (never stops them)."""
    logs: Path = ROOT / "artifacts" / "bench" / "logs"
    progress: Callable[[str], None] = field(default=lambda _: None)

    @classmethod
    def quick(cls, postgres_dsn: str, redis_url: str, **more: Any) -> OrderBenchOptions:
        """A sample of a few seconds (the test's): 4 and 16 buyers, half-second phases."""
        return cls(
            postgres_dsn=postgres_dsn,
            redis_url=redis_url,
            levels=QUICK_LEVELS,
            duration=0.5,
            warmup=0.3,
            sold_out_seconds=0.3,
            **more,
        )


@dataclass
class OrderFigure(Figure):
    """One phase of one system at one level. ``throughput`` is orders placed per second
    (selling) or requests answered per second (sold out); ``p50_ms``/``p99_ms`` are over
    every answered request of the measured window."""

    system: str = ""
    phase: str = "selling"
    buyers: int = 0
    orders_per_s: float = 0.0
    answered_per_s: float = 0.0
    units: int = 0
    """The sale's allocation (0: no stock, the bare POST)."""
    requests: int = 0
    """Requests sent in a sold-out phase."""
    cpu_ms: dict[str, float] = field(default_factory=dict)
    """CPU milliseconds per order placed (selling) or per request answered (sold out), per
    party, and ``path``: the sum over the processes on the checkout's path."""
    check: dict[str, Any] = field(default_factory=dict)
    """The oversell check of the phase's sale."""
    warmup_seconds: float = 0.0
    little_ms: float = 0.0
    """``buyers / answered per second``: the mean latency a closed loop in steady state must
    show (Little's law), to read the measured p50 against."""
    steady: bool = True
    """False when fewer requests were answered in the window than there are buyers: the
    first wave (every buyer's first request, sent at once) was still being answered, so
    the latencies are those of its early answers and p99 is a lower bound."""

    @property
    def oversold(self) -> int | None:
        value = self.check.get("oversold")
        return int(value) if value is not None else None


# -- a small HTTP/1.1 client: one keep-alive connection per buyer slot ------------------------


class HttpStatusError(Exception):
    """An answer that is neither 201 nor 409 sold out (counted as an error, with its code)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status = status

    def code(self) -> int:
        return self.status


class _Connection(asyncio.Protocol):
    """One persistent connection, one request at a time; responses parsed by httptools
    (what uvicorn parses requests with), so that the load generator costs little CPU."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(error)
            self.close()

    def on_message_begin(self) -> None:
        self._body = []

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self._parser.get_status_code(), b"".join(self._body)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def _fail(self, error: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.lost or self._transport is None:
            raise ConnectionResetError("connection closed")
        waiter: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._transport.write(request)
        return await waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class HttpClients:
    """A connection per buyer slot to one server; a lost connection is opened again on
    the slot's next request."""

    def __init__(self, base_url: str, slots: int) -> None:
        url = httpx.URL(base_url)
        self.host = url.host
        self.port = url.port or 80
        self._slots: list[_Connection | None] = [None] * slots

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_Connection, self.host, self.port)
        return protocol

    async def connect_all(self, batch: int = 128) -> None:
        """Open every slot's connection before a measurement starts."""
        for first in range(0, len(self._slots), batch):
            indexes = range(first, min(len(self._slots), first + batch))
            opened = await asyncio.gather(*(self._open() for _ in indexes))
            for index, connection in zip(indexes, opened, strict=True):
                self._slots[index] = connection

    async def send(self, slot: int, request: bytes) -> tuple[int, bytes]:
        connection = self._slots[slot]
        if connection is None or connection.lost:
            try:
                connection = self._slots[slot] = await self._open()
            except OSError:
                await asyncio.sleep(0.1)  # the server is down: no busy loop of refusals
                raise
        try:
            return await connection.exchange(request)
        except BaseException:
            connection.close()
            self._slots[slot] = None
            raise

    def close(self) -> None:
        for connection in self._slots:
            if connection is not None:
                connection.close()
        self._slots = [None] * len(self._slots)


class Buyers:
    """Viewer tokens of new buyers, minted ahead of a measurement (minting costs the client
    tens of µs each), one per request; more are minted on demand if they run out."""

    def __init__(self, prefix: str) -> None:
        self._issuer = TokenIssuer(ServiceSettings())
        self._prefix = prefix
        self._minted = 0
        self._ready: list[str] = []

    def _mint(self) -> str:
        self._minted += 1
        return self._issuer.mint(f"{self._prefix}-{self._minted}", [Role.VIEWER], ttl_seconds=7200)

    def prepare(self, count: int) -> None:
        missing = count - len(self._ready)
        if missing > 0:
            self._ready.extend(self._mint() for _ in range(missing))

    def next_token(self) -> str:
        return self._ready.pop() if self._ready else self._mint()


def order_body(merchant_id: str, room_id: str, sku_id: str) -> bytes:
    """The checkout's body, the same for the three systems."""
    return json.dumps(
        {
            "merchant_id": merchant_id,
            "room_id": room_id,
            "channel": "app",
            "lines": [{"sku_id": sku_id, "quantity": 1}],
        },
        separators=(",", ":"),
    ).encode()


def checkout_call(
    clients: HttpClients, buyers: Buyers, body: bytes, tag: str, placed: list[int]
) -> Call:
    """``POST /v1/orders`` as a new buyer with a new Idempotency-Key: "placed" on 201,
    "sold_out" on 409 sold out, :class:`HttpStatusError` otherwise. ``placed[0]`` counts
    every 201, warm-up included (for the oversell check)."""
    head = (
        f"POST /v1/orders HTTP/1.1\r\nHost: {clients.host}:{clients.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    ).encode()

    async def call(worker: int, seq: int) -> str:
        request = b"".join(
            (
                head,
                b"Authorization: Bearer ",
                buyers.next_token().encode(),
                f"\r\nIdempotency-Key: {tag}-{worker}-{seq}\r\n\r\n".encode(),
                body,
            )
        )
        status, answer = await clients.send(worker, request)
        if status == 201:
            placed[0] += 1
            return PLACED
        if status == 409 and b"sold out" in answer:
            return SOLD_OUT
        raise HttpStatusError(status, answer)

    return call


async def burst(call: Call, *, concurrency: int, requests: int) -> tuple[Sample, float]:
    """``concurrency`` buyers send ``requests`` requests between them, each buyer its next
    as soon as its last is answered. Returns the sample (``seconds``: until the last
    answer) and the time from the start to the last order placed."""
    sample = Sample()
    issued = 0
    last_placed = 0.0
    start = time.perf_counter()

    async def buyer(index: int) -> None:
        nonlocal issued, last_placed
        while issued < requests:
            seq = issued
            issued += 1
            began = time.perf_counter()
            try:
                outcome = await call(index, seq)
            except Exception as error:
                sample.errors[error_label(error)] += 1
                continue
            ended = time.perf_counter()
            sample.ops += 1
            sample.latencies_ms.append((ended - began) * 1000)
            sample.outcomes[outcome] += 1
            if outcome == PLACED:
                last_placed = max(last_placed, ended - start)

    await asyncio.gather(*(buyer(i) for i in range(concurrency)))
    sample.seconds = time.perf_counter() - start
    return sample, last_placed


# -- the systems ------------------------------------------------------------------------------


@dataclass
class Sale:
    sku_id: str
    units: int
    body: bytes
    sale_id: str = ""


def _cpu_of(pid: int) -> Callable[[], Reading]:
    return lambda: process_cpu(pid)


def _database_of(pid: int) -> str | None:
    """The database a Postgres backend serves, from its process title ("postgres: <user>
    <database> <client> <state>"); None for the cluster's own processes."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
    except OSError:
        return None
    return title[2].decode() if len(title) >= 4 and title[0] == b"postgres:" else None


def postgres_cpu(
    postmaster: int, databases: frozenset[str]
) -> tuple[Callable[[], Reading], Callable[[], Reading]]:
    """Two readers of the Postgres cluster's CPU: the backends serving ``databases`` (the
    path's), and everything else in the cluster (other databases' backends, other users of
    the shared stack, and the cluster's own writer, checkpointer, autovacuum ...)."""
    titles: dict[int, str] = {}

    def split() -> tuple[dict[int, float], dict[int, float]] | None:
        found = tree_cpu(postmaster)
        if found is None:
            return None
        ours: dict[int, float] = {}
        rest: dict[int, float] = {}
        for pid, cpu in found.items():
            database = titles.get(pid) or _database_of(pid)
            if database is not None:  # a backend just forked has no title yet: ask again
                titles[pid] = database
            (ours if database in databases else rest)[pid] = cpu
        return ours, rest

    def path() -> Reading:
        both = split()
        return both[0] if both else None

    def other() -> Reading:
        both = split()
        return both[1] if both else None

    return path, other


def _self_cpu() -> float:
    times = os.times()
    return times.user + times.system


class System(ABC):
    """What the phases need of a system: a fresh sale, the oversell check, and the CPU of
    the processes on its path."""

    name = ""
    databases: frozenset[str] = frozenset()
    """The Postgres databases on the path (their backends' CPU is the path's)."""

    def __init__(self, base_url: str, postmaster: int | None) -> None:
        self.base_url = base_url
        self._postmaster = postmaster

    @abstractmethod
    async def new_sale(self, units: int) -> Sale:
        """A fresh sale of ``units`` units of a new SKU; the body that buys one."""

    @abstractmethod
    async def check(self, sale: Sale, placed: int) -> dict[str, Any]:
        """The oversell check of ``sale``, ``placed`` orders having been answered 201."""

    @abstractmethod
    def pids(self) -> dict[str, int]:
        """The processes on (and beside) the path, by name."""

    def cpu_sources(self, pids: Mapping[str, int]) -> dict[str, Callable[[], Reading]]:
        sources: dict[str, Callable[[], Reading]] = {"client": _self_cpu}
        for name, pid in pids.items():
            sources[name] = _cpu_of(pid)
        if self.databases and self._postmaster is not None:
            path, other = postgres_cpu(self._postmaster, self.databases)
            sources["postgres"] = path
            sources["postgres-other"] = other
        return sources


class BareSystem(System):
    name = "bare"

    def __init__(self, base_url: str, pid: int) -> None:
        super().__init__(base_url, None)
        self._pid = pid

    async def new_sale(self, units: int) -> Sale:
        return Sale("sku-bare", 0, order_body("bench-bare", "room-bare", "sku-bare"))

    async def check(self, sale: Sale, placed: int) -> dict[str, Any]:
        return {}

    def pids(self) -> dict[str, int]:
        return {"server": self._pid}


class NaiveSystem(System):
    name = "naive"

    def __init__(
        self,
        base_url: str,
        pid: int,
        postmaster: int | None,
        conn: asyncpg.Connection,
        database: str,
        uid: str,
    ) -> None:
        super().__init__(base_url, postmaster)
        self.databases = frozenset({database})
        self._pid = pid
        self._conn = conn
        self._merchant = f"bench-naive-{uid}"
        self._skus = 0

    async def new_sale(self, units: int) -> Sale:
        self._skus += 1
        sku = f"sku-{self._skus}"
        await self._conn.execute(
            "INSERT INTO naive_stock VALUES ($1, $2, $3, $4, 'CNY')",
            self._merchant,
            sku,
            units,
            FLASH_PRICE,
        )
        return Sale(sku, units, order_body(self._merchant, "room-naive", sku))

    async def check(self, sale: Sale, placed: int) -> dict[str, Any]:
        remaining = int(
            await self._conn.fetchval(
                "SELECT qty FROM naive_stock WHERE merchant_id = $1 AND sku_id = $2",
                self._merchant,
                sale.sku_id,
            )
        )
        row = await self._conn.fetchrow(
            "SELECT count(*) AS orders, coalesce(sum((lines->0->>'quantity')::bigint), 0) AS units"
            " FROM naive_orders WHERE merchant_id = $1 AND lines->0->>'sku_id' = $2",
            self._merchant,
            sale.sku_id,
        )
        assert row is not None
        orders, units = int(row["orders"]), int(row["units"])
        taken = sale.units - remaining
        oversold = max(0, -remaining) + max(0, int(units) - sale.units)
        return {
            "allocated": sale.units,
            "remaining": remaining,
            "orders": int(orders),
            "units_in_orders": int(units),
            "answered_201": placed,
            "oversold": oversold,
            "passed": oversold == 0 and remaining >= 0 and int(units) == taken == placed,
        }

    def pids(self) -> dict[str, int]:
        return {"server": self._pid}


class RealSystem(System):
    """The running stack: a merchant with a room; each sale a new SKU with stock, a list
    price and a flash-sale campaign in the room, all through the public HTTP APIs."""

    name = "real"
    databases = frozenset({"order", "inventory", "promotion"})

    def __init__(
        self, endpoints: Endpoints, postmaster: int | None, http: httpx.AsyncClient, uid: str
    ) -> None:
        super().__init__(endpoints.order, postmaster)
        self._endpoints = endpoints
        self._http = http
        self.merchant = f"bench-orders-{uid}"
        self.room = f"room-{uid}"
        issuer = TokenIssuer(ServiceSettings())
        token = issuer.mint(f"bench-admin-{uid}", [Role.MERCHANT_ADMIN], self.merchant, 7200)
        self._admin = {"Authorization": f"Bearer {token}"}
        self._uid = uid
        self._sales: list[str] = []
        self._config = StackConfig()

    async def _call(
        self, method: str, url: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One set-up call. While a service is not accepting connections, or answers 503
        because one it depends on is not (restarted by someone else on a shared stack), the
        call is tried again for up to ``STACK_READY_SECONDS``. Every set-up call may be
        repeated: prices, campaigns and their start are idempotent on their ids, and a
        receipt answered 503 was not recorded (one recorded twice would only add stock the
        sale never sees: its allocation is the campaign's quantity)."""
        deadline = time.monotonic() + STACK_READY_SECONDS
        while True:
            try:
                response = await self._http.request(method, url, json=body, headers=self._admin)
            except httpx.ConnectError:
                response = None
            if response is not None and response.status_code != 503:
                return await self._ok(response)
            if time.monotonic() > deadline:
                if response is None:
                    raise httpx.ConnectError(f"{method} {url}: the service is not running")
                return await self._ok(response)
            await asyncio.sleep(0.5)

    async def _ok(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code not in (200, 201):
            raise RuntimeError(
                f"{response.request.method} {response.request.url}: {response.status_code}"
                f" {response.text[:500]}"
            )
        body: dict[str, Any] = response.json()
        return body

    async def new_sale(self, units: int) -> Sale:
        n = len(self._sales) + 1
        sku, sale_id = f"sku-{self._uid}-{n}", f"sale-{self._uid}-{n}"
        at = self._endpoints
        await self._call("POST", f"{at.inventory}/v1/skus/{sku}/receipts", {"quantity": units})
        price = {"amount_minor": LIST_PRICE, "currency": "CNY"}
        await self._call("PUT", f"{at.promotion}/v1/prices/{sku}", price)
        now = datetime.now(UTC)
        campaign = {
            "campaign_id": sale_id,
            "sku_id": sku,
            "room_id": self.room,
            "quantity": units,
            "starts_at": (now - timedelta(seconds=1)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
            "per_user_limit": 1,
            "hold_ttl_seconds": HOLD_TTL_SECONDS,
            "flash_price": {"amount_minor": FLASH_PRICE, "currency": "CNY"},
        }
        await self._call("POST", f"{at.promotion}/v1/campaigns", campaign)
        self._sales.append(sale_id)
        await self._call("POST", f"{at.promotion}/v1/campaigns/{sale_id}/start")
        return Sale(sku, units, order_body(self.merchant, self.room, sku), sale_id)

    async def sale_counts(self, sale_id: str) -> dict[str, Any]:
        return await self._call("GET", f"{self._endpoints.inventory}/v1/sales/{sale_id}")

    async def check(self, sale: Sale, placed: int) -> dict[str, Any]:
        counts = await self.sale_counts(sale.sale_id)
        taken = int(counts["held"]) + int(counts["sold"])
        allocated = int(counts["allocated"])
        oversold = max(0, taken - allocated) + max(0, placed - allocated)
        return {
            "allocated": allocated,
            "held": counts["held"],
            "sold": counts["sold"],
            "available": counts["available"],
            "answered_201": placed,
            "oversold": oversold,
            "passed": oversold == 0 and int(counts["available"]) >= 0 and placed <= taken,
        }

    def pids(self) -> dict[str, int]:
        wanted = (*PATH_PROCESSES, *SIDE_PROCESSES, "redis")
        found = {p.name: p.pid for p in devstack_stack.status(self._config)}
        # Redis is read through INFO cpu instead of its pid (it may be in a container)
        return {name: found[name] for name in wanted if found.get(name) and name != "redis"}

    async def end_sales(self) -> None:
        """Stop the campaigns (their sales close; unsold units go back)."""
        for sale_id in self._sales:
            with suppress(httpx.HTTPError):
                await self._http.post(
                    f"{self._endpoints.promotion}/v1/campaigns/{sale_id}/stop", headers=self._admin
                )


# -- the phases -------------------------------------------------------------------------------


def _cpu_ms(
    system: str, percent: Mapping[str, float], seconds: float, count: int
) -> dict[str, float]:
    """CPU ms per ``count`` (orders or answers) from % of a core over ``seconds``."""
    if count <= 0 or seconds <= 0:
        return {}
    per = {
        name: round(value / 100 * seconds * 1000 / count, 3)
        for name, value in percent.items()
        if name not in ("other", "steal")
    }
    per["path"] = round(sum(per.get(name, 0.0) for name in PATH_PARTIES[system]), 3)
    return per


def _figure(system: System, phase: str, buyers: int, sample: Sample, **extra: Any) -> OrderFigure:
    key = f"{system.name}@{buyers}" + ("" if phase == "selling" else " sold out")
    title = SYSTEMS[system.name] + ("" if phase == "selling" else ", sold-out phase")
    return OrderFigure(
        key=key,
        title=title,
        concurrency=str(buyers),
        system=system.name,
        phase=phase,
        buyers=buyers,
        ops=sample.ops,
        seconds=round(sample.seconds, 3),
        p50_ms=round(percentile(sample.latencies_ms, 0.50), 2),
        p99_ms=round(percentile(sample.latencies_ms, 0.99), 2),
        outcomes=dict(sample.outcomes),
        errors=dict(sample.errors),
        **extra,
    )


class Runner:
    def __init__(self, options: OrderBenchOptions, redis: Redis, uid: str) -> None:
        self.options = options
        self._redis = redis
        self._uid = uid
        self._buyers = Buyers(f"bench-buyer-{uid}")

    def _window(self, system: System, pids: Mapping[str, int]) -> CpuWindow:
        redis = self._redis if system.name == "real" else None
        return CpuWindow(system.cpu_sources(pids), redis=redis)

    def warmup(self, buyers: int, expected_rate: float) -> float:
        """At least ``options.warmup``, and long enough for the first wave of ``buyers``
        requests (all sent at once) to be answered before measuring: the closed loop's
        steady state, not its start, is measured."""
        options = self.options
        first_wave = 1.5 * buyers / max(expected_rate, 1.0)
        return round(min(max(options.warmup, first_wave), options.warmup + 6.0), 2)

    async def selling(self, system: System, buyers: int, expected_rate: float) -> OrderFigure:
        options = self.options
        warmup = self.warmup(buyers, expected_rate)
        units = SELLING_UNITS.get(system.name, 0)
        sale = await system.new_sale(units)
        self._buyers.prepare(int(expected_rate * (warmup + options.duration) * 1.2))
        clients = HttpClients(system.base_url, buyers)
        placed = [0]
        tag = f"s{self._uid}{uuid4().hex[:6]}"
        call = checkout_call(clients, self._buyers, sale.body, tag, placed)
        pids = system.pids()
        cpu = self._window(system, pids)

        async def window() -> None:
            await asyncio.sleep(warmup)
            await cpu.start()
            await asyncio.sleep(options.duration)
            await cpu.stop()

        watcher = asyncio.create_task(window())
        try:
            sample = await asyncio.wait_for(
                closed_loop(call, concurrency=buyers, duration=options.duration, warmup=warmup),
                timeout=warmup + options.duration + REQUEST_TIMEOUT_SECONDS,
            )
            await watcher
        finally:
            watcher.cancel()
            clients.close()
        percent = cpu.finish()
        placed_in_window = sample.outcomes.get(PLACED, 0)
        rate = placed_in_window / sample.seconds if sample.seconds else 0.0
        return _figure(
            system,
            "selling",
            buyers,
            sample,
            throughput=round(rate, 1),
            orders_per_s=round(rate, 1),
            answered_per_s=round(sample.throughput, 1),
            units=units,
            cpu_percent=percent,
            cpu_ms=_cpu_ms(system.name, percent, sample.seconds, placed_in_window),
            check=await system.check(sale, placed[0]),
            detail=_restarted(pids, system.pids()),
            warmup_seconds=warmup,
            little_ms=round(buyers / sample.throughput * 1000, 1) if sample.throughput else 0.0,
            steady=sample.ops >= buyers,
        )

    async def sold_out(self, system: System, buyers: int, selling_rate: float) -> OrderFigure:
        options = self.options
        ratio = max(1, options.sold_out_ratio)
        units = max(
            1,
            math.ceil(selling_rate * options.sold_out_seconds / ratio),
            math.ceil(buyers / ratio),
        )
        requests = units * ratio
        sale = await system.new_sale(units)
        self._buyers.prepare(requests)
        clients = HttpClients(system.base_url, buyers)
        placed = [0]
        tag = f"o{self._uid}{uuid4().hex[:6]}"
        call = checkout_call(clients, self._buyers, sale.body, tag, placed)
        try:
            await clients.connect_all()
            pids = system.pids()
            cpu = self._window(system, pids)
            await cpu.start()
            sample, last_placed = await asyncio.wait_for(
                burst(call, concurrency=buyers, requests=requests),
                timeout=REQUEST_TIMEOUT_SECONDS + 10 * options.sold_out_seconds,
            )
            await cpu.stop()
        finally:
            clients.close()
        percent = cpu.finish()
        orders = sample.outcomes.get(PLACED, 0)
        return _figure(
            system,
            "sold_out",
            buyers,
            sample,
            throughput=round(sample.throughput, 1),
            orders_per_s=round(orders / last_placed, 1) if last_placed > 0 else 0.0,
            answered_per_s=round(sample.throughput, 1),
            units=units,
            requests=requests,
            cpu_percent=percent,
            cpu_ms=_cpu_ms(system.name, percent, sample.seconds, sample.ops),
            check=await system.check(sale, placed[0]),
            detail=_restarted(pids, system.pids()),
        )


def _restarted(before: Mapping[str, int], after: Mapping[str, int]) -> str:
    moved = [name for name, pid in before.items() if after.get(name) != pid]
    return f"restarted during the phase: {', '.join(moved)}" if moved else ""


# -- servers the bench starts -------------------------------------------------------------------


async def _wait_http(url: str, process: subprocess.Popen[bytes] | None, log: Path | None) -> None:
    deadline = time.monotonic() + STACK_READY_SECONDS
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            if process is not None and process.poll() is not None:
                tail = _tail(log) if log else ""
                raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{tail}")
            with suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer 200 within {STACK_READY_SECONDS:g} s")
            await asyncio.sleep(0.1)


@dataclass(frozen=True)
class ServerSpec:
    argv: tuple[str, ...]
    port: int
    ready_path: str
    log: Path


@asynccontextmanager
async def http_servers(
    specs: Sequence[ServerSpec], env: Mapping[str, str]
) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    """Server processes, started together, each answering 200 on its ``ready_path`` on
    ``127.0.0.1:port`` for the duration; always stopped."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for spec in specs:
            spec.log.parent.mkdir(parents=True, exist_ok=True)
            with spec.log.open("wb") as out:  # the child keeps its own descriptor
                processes.append(
                    subprocess.Popen(  # noqa: ASYNC220 - started once, never waited on here
                        spec.argv, env=dict(env), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
                    )
                )
        await asyncio.gather(
            *(
                _wait_http(f"http://127.0.0.1:{spec.port}{spec.ready_path}", process, spec.log)
                for spec, process in zip(specs, processes, strict=True)
            )
        )
        yield processes
    finally:
        for process in processes:
            stop_process(process)


async def ensure_stack_services(options: OrderBenchOptions) -> str | None:
    """The stack's inventory, promotion and order APIs ready (started when they are not
    running, never restarted or stopped); the reason when they cannot be used."""
    at = options.endpoints
    urls = [f"{base}/readyz" for base in (at.inventory, at.promotion, at.order)]

    async def all_ready() -> bool:
        async with httpx.AsyncClient(timeout=2) as http:
            for url in urls:
                try:
                    if (await http.get(url)).status_code != 200:
                        return False
                except httpx.HTTPError:
                    return False
        return True

    if await all_ready():
        return None
    if options.start_services:
        options.progress("starting the stack's service processes (they are left running)")
        try:
            await asyncio.to_thread(devstack_stack.start_services, StackConfig())
        except Exception as error:
            return f"the stack's services could not be started: {error}"
    try:
        for url in urls:
            await _wait_http(url, None, None)
    except RuntimeError as error:
        return str(error)
    return None


# -- the run ----------------------------------------------------------------------------------


def targets_of(figures: Mapping[str, OrderFigure], levels: Sequence[int]) -> list[Target]:
    def selling(system: str, buyers: int) -> OrderFigure | None:
        found = figures.get(f"{system}@{buyers}")
        return found if found is not None and not found.skipped and found.ops > 0 else None

    def ratio(top: float | None, bottom: float | None) -> float | None:
        return round(top / bottom, 3) if top is not None and bottom else None

    targets = []
    for n in levels:
        real, bare = selling("real", n), selling("bare", n)
        targets.append(
            Target(
                f"orders/s vs bare POST, {n} buyers",
                f"real@{n} / bare@{n}",
                ratio(real.orders_per_s if real else None, bare.orders_per_s if bare else None),
                0.3,
            )
        )
    for n in levels:
        if n < 256:
            continue
        real, naive = selling("real", n), selling("naive", n)
        targets.append(
            Target(
                f"orders/s vs naive, {n} buyers",
                f"real@{n} / naive@{n}",
                ratio(real.orders_per_s if real else None, naive.orders_per_s if naive else None),
                1.0,
            )
        )
        targets.append(
            Target(
                f"p99 vs naive's, {n} buyers",
                f"p99(real@{n}) / p99(naive@{n})",
                ratio(real.p99_ms if real else None, naive.p99_ms if naive else None),
                0.5,
                at_most=True,
            )
        )
    checked = [f for f in figures.values() if f.check]
    oversold = sum(f.oversold or 0 for f in checked)
    targets.append(
        Target(
            f"units oversold, {len(checked)} sales",
            "oversold",
            float(oversold) if checked else None,
            0.0,
            at_most=True,
        )
    )
    return targets


def _meta(options: OrderBenchOptions, uid: str) -> dict[str, Any]:
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_at_start": _load(),
        "python": platform.python_version(),
        "git_revision": _git_revision(),
        "levels": list(options.levels),
        "systems": list(options.systems),
        "duration_seconds": options.duration,
        "warmup_seconds": options.warmup,
        "sold_out_seconds": options.sold_out_seconds,
        "sold_out_ratio": options.sold_out_ratio,
        "run_id": uid,
    }


EXPECTED_RATE = {"bare": 3000.0, "naive": 1500.0, "real": 600.0}
"""Tokens minted ahead of the first level (later levels use the rate last measured)."""


async def _measure(
    options: OrderBenchOptions,
    runner: Runner,
    systems: Sequence[System],
    skipped: Mapping[str, str],
) -> dict[str, OrderFigure]:
    figures: dict[str, OrderFigure] = {}
    rates = dict(EXPECTED_RATE)
    for buyers in options.levels:
        for name in options.systems:
            system = next((s for s in systems if s.name == name), None)
            if system is None:
                for phase in ("selling", "sold_out") if name != "bare" else ("selling",):
                    figure = _skipped(name, buyers, phase, skipped.get(name, "not run"))
                    figures[figure.key] = figure
                continue
            options.progress(f"{name}: {SYSTEMS[name]}, {buyers} buyers")
            selling = await _phase(runner.selling(system, buyers, rates[name]), name, buyers)
            figures[selling.key] = selling
            rates[name] = max(rates[name] / 4, selling.answered_per_s)
            if name != "bare":
                options.progress(f"{name}: sold-out phase, {buyers} buyers")
                sold_out = await _phase(
                    runner.sold_out(system, buyers, selling.orders_per_s), name, buyers, "sold_out"
                )
                figures[sold_out.key] = sold_out
    return figures


def _skipped(name: str, buyers: int, phase: str, reason: str) -> OrderFigure:
    suffix = "" if phase == "selling" else " sold out"
    return OrderFigure(
        f"{name}@{buyers}{suffix}",
        SYSTEMS[name],
        str(buyers),
        system=name,
        phase=phase,
        buyers=buyers,
        skipped=reason,
    )


async def _phase(
    measuring: Coroutine[Any, Any, OrderFigure], name: str, buyers: int, phase: str = "selling"
) -> OrderFigure:
    """A phase that fails (a server gone, a hung request) is reported as skipped with its
    reason; the run goes on with the next one."""
    try:
        return await measuring
    except Exception as error:
        return _skipped(name, buyers, phase, f"failed: {error_label(error)}: {error}"[:400])


async def run_order_bench(options: OrderBenchOptions) -> Report:
    uid = uuid4().hex[:8]
    meta = _meta(options, uid)
    started = time.perf_counter()
    database = f"bench_orders_{uid}"
    dsn = database_url(options.postgres_dsn, database)
    skipped: dict[str, str] = {}
    admin = await asyncpg.connect(options.postgres_dsn)
    redis = Redis.from_url(options.redis_url)
    figures: dict[str, OrderFigure] = {}
    real: RealSystem | None = None
    try:
        postmaster = postmaster_of(int(await admin.fetchval("SELECT pg_backend_pid()")))
        meta["postgres"] = str(await admin.fetchval("SHOW server_version"))
        await admin.execute(f'CREATE DATABASE "{database}"')
        naive_conn = await asyncpg.connect(dsn)
        try:
            await naive_conn.execute(NAIVE_SCHEMA)
            async with (
                httpx.AsyncClient(timeout=30) as http,
                _bench_servers(options, dsn) as (bare_port, bare_pid, naive_port, naive_pid),
            ):
                systems: list[System] = []
                if "bare" in options.systems:
                    systems.append(BareSystem(f"http://127.0.0.1:{bare_port}", bare_pid))
                if "naive" in options.systems:
                    base = f"http://127.0.0.1:{naive_port}"
                    systems.append(
                        NaiveSystem(base, naive_pid, postmaster, naive_conn, database, uid)
                    )
                if "real" in options.systems:
                    options.progress("checking the stack's order, promotion and inventory APIs")
                    reason = await ensure_stack_services(options)
                    if reason is None:
                        real = RealSystem(options.endpoints, postmaster, http, uid)
                        reason = await _smoke(real)
                    if reason is None and real is not None:
                        systems.append(real)
                    else:
                        skipped["real"] = reason or "not run"
                        options.progress(f"real checkout skipped: {reason}")
                runner = Runner(options, redis, uid)
                try:
                    figures = await _measure(options, runner, systems, skipped)
                finally:
                    if real is not None:
                        with suppress(TimeoutError):  # a wedged stack must not hold the run
                            await asyncio.wait_for(real.end_sales(), timeout=30)
        finally:
            await naive_conn.close()
    finally:
        with suppress(Exception):
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
        await redis.aclose()
    meta["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    meta["load_average_at_end"] = _load()
    meta["skipped"] = skipped
    typed: dict[str, Figure] = dict(figures)
    return Report(meta=meta, figures=typed, targets=targets_of(figures, options.levels))


async def _smoke(real: RealSystem) -> str | None:
    """One order on a sale of one unit before measuring: None if the path works, else why
    not (e.g. a service not finished yet)."""
    try:
        sale = await real.new_sale(1)
        clients = HttpClients(real.base_url, 1)
        placed = [0]
        buyers = Buyers(f"bench-smoke-{uuid4().hex[:6]}")
        call = checkout_call(clients, buyers, sale.body, f"smoke{uuid4().hex[:8]}", placed)
        try:
            outcome = await asyncio.wait_for(call(0, 0), timeout=30)
        finally:
            clients.close()
    except Exception as error:
        return f"a first order could not be placed: {error_label(error)}: {error}"
    return None if outcome == PLACED else f"a first order was answered {outcome}"


@asynccontextmanager
async def _bench_servers(
    options: OrderBenchOptions, naive_dsn: str
) -> AsyncIterator[tuple[int, int, int, int]]:
    bare_port, naive_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_NAIVE_")}
    env["BENCH_NAIVE_POSTGRES_DSN"] = naive_dsn
    python = sys.executable
    specs = [
        ServerSpec(
            (python, "-m", "bench.bare_post", str(bare_port)),
            bare_port,
            "/healthz",
            options.logs / "bare_post.log",
        ),
        ServerSpec(
            (python, "-m", "bench.naive_checkout", str(naive_port)),
            naive_port,
            "/readyz",
            options.logs / "naive_checkout.log",
        ),
    ]
    async with http_servers(specs, env) as (bare, naive):
        yield bare_port, bare.pid, naive_port, naive.pid


# -- the report -------------------------------------------------------------------------------


def _cpu_parties(figure: OrderFigure, on_path: bool) -> str:
    path = PATH_PARTIES[figure.system]
    shown = {
        name: value
        for name, value in figure.cpu_ms.items()
        if name != "path" and (name in path) == on_path and value >= 0.05
    }
    return ", ".join(f"{name} {value:.2f}" for name, value in shown.items())


def _check_text(figure: OrderFigure) -> str:
    check = figure.check
    if not check:
        return "-"
    ok = "[green]ok[/green]" if check.get("passed") else "[bold red]FAILED[/bold red]"
    if figure.system == "naive":
        return f"{ok}: {check['orders']}/{check['allocated']} units, stock {check['remaining']}"
    taken = int(check["held"]) + int(check["sold"])
    return f"{ok}: held+sold {taken}/{check['allocated']}, 201s {check['answered_201']}"


def render_orders(report: Report, console: Console) -> None:
    meta = report.meta
    load = meta["load_average_at_start"]
    title = (
        f"order checkout - {meta['cpus']} CPUs (shared), load {load[0] if load else 0:.2f} at"
        f" start; selling: {meta['duration_seconds']:g} s after {meta['warmup_seconds']:g} s"
        f" warm-up; sold out: {meta['sold_out_ratio']} requests per unit"
    )
    table = Table(title=title, title_justify="left")
    for column in ("figure", "buyers", "orders/s", "answered/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    table.add_column("CPU-ms/order", justify="right")
    table.add_column("on the path", overflow="fold")
    table.add_column("off the path", overflow="fold")
    table.add_column("oversell check", overflow="fold")
    table.add_column("answers", overflow="fold")
    for figure in report.figures.values():
        assert isinstance(figure, OrderFigure)
        label = figure.system + (" sold out" if figure.phase == "sold_out" else "")
        if figure.skipped:
            table.add_row(
                label, str(figure.buyers), "skipped", "", "", "", "", "", "", "", figure.skipped
            )
            continue
        answers = [f"{name} {count:,}" for name, count in figure.outcomes.items()]
        answers += [f"[red]{name} {count:,}[/red]" for name, count in figure.errors.items()]
        if figure.detail:
            answers.append(f"[yellow]{figure.detail}[/yellow]")
        if not figure.steady:
            answers.append(
                f"[yellow]fewer answers than buyers: p99 is a lower bound (steady-state mean"
                f" {figure.little_ms:,.0f} ms)[/yellow]"
            )
        per = "/answer" if figure.phase == "sold_out" else ""
        path = figure.cpu_ms.get("path")
        table.add_row(
            label,
            str(figure.buyers),
            f"{figure.orders_per_s:,.0f}",
            f"{figure.answered_per_s:,.0f}",
            f"{figure.p50_ms:.1f}",
            f"{figure.p99_ms:.1f}" if figure.steady else f">= {figure.p99_ms:.1f}",
            f"{path:.2f}{per}" if path is not None else "",
            _cpu_parties(figure, on_path=True),
            _cpu_parties(figure, on_path=False),
            _check_text(figure),
            "; ".join(answers),
        )
    console.print(table)
    targets = Table(title="targets (selling phases)", title_justify="left")
    for column in ("target", "measure", "value", "wanted", "result"):
        targets.add_column(column)
    for target in report.targets:
        wanted = f"{'<=' if target.at_most else '>='} {target.threshold:g}"
        if target.passed is None:
            result = "[yellow]n/a[/yellow] (not measured)"
        else:
            result = "[green]PASS[/green]" if target.passed else "[bold red]MISS[/bold red]"
        value = "-" if target.value is None else f"{target.value:.3g}"
        targets.add_row(target.name, target.expression, value, wanted, result)
    console.print(targets)


# -- python -m bench.order_checkout ---------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    config = StackConfig()
    default = OrderBenchOptions(
        postgres_dsn=config.postgres_dsn("postgres"), redis_url=config.redis_url
    )
    parser = argparse.ArgumentParser(
        prog="python -m bench.order_checkout",
        description="The order checkout through HTTP against a bare POST and the naive"
        " single-database checkout (docs/benchmarks.md).",
    )
    add = parser.add_argument
    add("--postgres-dsn", default=default.postgres_dsn, help="the naive DB is created beside")
    add("--redis-url", default=default.redis_url)
    add("--levels", default=",".join(map(str, default.levels)), help="concurrent buyers")
    add("--duration", type=float, default=default.duration, help="seconds measured per phase")
    add("--warmup", type=float, default=default.warmup, help="seconds before measuring")
    add("--sold-out-seconds", type=float, default=default.sold_out_seconds)
    add("--sold-out-ratio", type=int, default=default.sold_out_ratio, help="requests per unit")
    add("--systems", default=",".join(default.systems), help="bare,naive,real")
    add("--quick", action="store_true", help="a sample of a few seconds (4 and 16 buyers)")
    add("--no-start", action="store_true", help="do not start the stack's services")
    add("--output", type=Path, default=DEFAULT_OUTPUT)
    add("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser


def options_from(args: argparse.Namespace, progress: Callable[[str], None]) -> OrderBenchOptions:
    systems = tuple(s for s in args.systems.split(",") if s)
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"unknown systems: {', '.join(sorted(unknown))}")
    common: dict[str, Any] = {
        "systems": systems,
        "start_services": not args.no_start,
        "logs": args.output.parent / "logs",
        "progress": progress,
    }
    if args.quick:
        return OrderBenchOptions.quick(args.postgres_dsn, args.redis_url, **common)
    return OrderBenchOptions(
        postgres_dsn=args.postgres_dsn,
        redis_url=args.redis_url,
        levels=tuple(int(v) for v in args.levels.split(",") if v),
        duration=args.duration,
        warmup=args.warmup,
        sold_out_seconds=args.sold_out_seconds,
        sold_out_ratio=args.sold_out_ratio,
        **common,
    )


async def _until_stopped(options: OrderBenchOptions) -> Report:
    """SIGTERM cancels the run like Ctrl-C, so its servers and database are cleaned up."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_order_bench(options)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = bench_console(width=200)
    options = options_from(args, lambda step: console.print(f"[dim]- {step}[/dim]"))
    try:
        report = uvloop.run(_until_stopped(options))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("bench: interrupted; its servers and database were removed", file=sys.stderr)
        return 130
    render_orders(report, console)
    path = write_json(report, args.output)
    console.print(f"written: {path}")
    return 1 if args.strict and report.missed else 0


if __name__ == "__main__":
    sys.exit(main())
