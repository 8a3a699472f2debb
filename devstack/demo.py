"""The scenario `make demo` runs against the real stack, every step through public APIs.

So far (the Foundation): a merchant receives stock of a SKU over HTTP; the events go to
the inventory event store, the outbox relay publishes them to Kafka, an independent
observer reads them off the topic, the inventory worker's consumer projects them into the
stock-levels read model, and gRPC answers the same figure. Bad input is refused with
problem+json, and another merchant cannot see the SKU. Every figure is checked at the end;
a failed check exits non-zero.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import grpc
import httpx
from aiokafka import AIOKafkaConsumer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.table import Table

from devstack import stack
from devstack.config import StackConfig
from devstack.stream import StreamError, StreamSize, render_checks, run_stream
from livecommerce.inventory.v1 import events_pb2, inventory_pb2, inventory_pb2_grpc
from livecommerce.kit.v1.envelope_pb2 import Envelope
from services.kit.grpc import authenticated_channel
from services.kit.identity import Role, TokenIssuer
from services.kit.settings import ServiceSettings

INVENTORY_HTTP = "http://127.0.0.1:8101"
INVENTORY_GRPC = "127.0.0.1:50101"
READY_TIMEOUT = 60.0


class DemoError(Exception):
    pass


@dataclass
class Outcome:
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    def check(self, name: str, passed: bool, detail: str) -> None:
        self.checks.append((name, passed, detail))

    @property
    def passed(self) -> bool:
        return all(passed for _, passed, _ in self.checks)


async def _wait_ready(http: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            if (await http.get(f"{INVENTORY_HTTP}/readyz")).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise DemoError("inventory API did not become ready; see .stack/logs/")
        await asyncio.sleep(0.2)
    async with grpc.aio.insecure_channel(INVENTORY_GRPC) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise DemoError("inventory gRPC did not become ready; see .stack/logs/")
            await asyncio.sleep(0.2)


async def _observe(
    config: StackConfig, merchant_id: str, count: int
) -> list[tuple[int, int, Envelope]]:
    """Read the merchant's events off inventory.events as any other service would."""
    consumer = AIOKafkaConsumer(
        "inventory.events",
        bootstrap_servers=config.kafka_bootstrap,
        group_id=f"demo-observer-{uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=30,
    )
    await consumer.start()
    seen: list[tuple[int, int, Envelope]] = []
    try:
        deadline = time.monotonic() + 30
        while len(seen) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    envelope = Envelope.FromString(record.value or b"")
                    if envelope.merchant_id == merchant_id:
                        seen.append((record.partition, record.offset, envelope))
    finally:
        await consumer.stop()
    return seen


async def smoke(config: StackConfig, console: Console) -> Outcome:
    outcome = Outcome()
    issuer = TokenIssuer(ServiceSettings())
    merchant = f"demo-brand-{uuid4().hex[:6]}"
    sku = "SKU-LIPSTICK-01"
    admin = {
        "authorization": "Bearer " + issuer.mint("demo-admin", [Role.MERCHANT_ADMIN], merchant)
    }
    stranger = {
        "authorization": "Bearer " + issuer.mint("other", [Role.MERCHANT_ADMIN], "other-brand")
    }

    async with httpx.AsyncClient(timeout=10) as http:
        console.print("waiting for the inventory service (HTTP and gRPC health) ...")
        await _wait_ready(http)
        observer = asyncio.create_task(_observe(config, merchant, 2))

        steps = Table(
            "step", "HTTP", "result", title=f"merchant {merchant} receives stock of {sku}"
        )
        request_ids: list[str] = []
        for quantity in (60, 40):
            started = time.perf_counter()
            reply = await http.post(
                f"{INVENTORY_HTTP}/v1/skus/{sku}/receipts",
                json={"quantity": quantity},
                headers=admin,
            )
            elapsed = (time.perf_counter() - started) * 1000
            body = reply.json()
            request_ids.append(reply.headers.get("x-request-id", ""))
            steps.add_row(
                f"POST receipt of {quantity}",
                str(reply.status_code),
                f"on_hand={body.get('on_hand')} version={body.get('version')} ({elapsed:.1f} ms)",
            )
            if reply.status_code != 201:
                raise DemoError(f"receiving stock failed: {reply.status_code} {body}")
        console.print(steps)

        events = await observer
        flow = Table(
            "partition/offset",
            "event",
            "version",
            "position",
            "correlation id",
            title="read back from Kafka topic inventory.events (published by the outbox relay)",
        )
        for partition, offset, envelope in sorted(events, key=lambda e: e[2].position):
            received = events_pb2.StockReceived.FromString(envelope.payload)
            flow.add_row(
                f"{partition}/{offset}",
                f"{envelope.event_type.rsplit('.', 1)[-1]} +{received.quantity}",
                str(envelope.aggregate_version),
                str(envelope.position),
                "= request id" if envelope.correlation_id in request_ids else "other",
            )
        console.print(flow)
        outcome.check("both events reached Kafka", len(events) == 2, f"{len(events)} of 2")
        outcome.check(
            "events carry the request id as correlation id",
            all(e.correlation_id in request_ids for _, _, e in events),
            "each envelope's correlation_id is the x-request-id of its POST",
        )

        started = time.perf_counter()
        projected: dict[str, object] = {}
        while time.perf_counter() - started < 30:
            reply = await http.get(f"{INVENTORY_HTTP}/v1/stock-levels/{sku}", headers=admin)
            if reply.status_code == 200 and reply.json()["version"] == 2:
                projected = reply.json()
                break
            await asyncio.sleep(0.05)
        lag_ms = (time.perf_counter() - started) * 1000
        stored = (await http.get(f"{INVENTORY_HTTP}/v1/skus/{sku}", headers=admin)).json()

        async with authenticated_channel(
            INVENTORY_GRPC, lambda: issuer.service_token("demo")
        ) as channel:
            level = await inventory_pb2_grpc.InventoryServiceStub(channel).GetStock(
                inventory_pb2.GetStockRequest(sku_id=sku, merchant_id=merchant), timeout=5
            )

        figures = Table("source", "on hand", "version", title="the same stock, three ways")
        figures.add_row(
            "event store (HTTP GET /v1/skus)", str(stored["on_hand"]), str(stored["version"])
        )
        figures.add_row(
            f"read model via consumer (seen after {lag_ms:.0f} ms)",
            str(projected.get("on_hand")),
            str(projected.get("version")),
        )
        figures.add_row("gRPC GetStock (service identity)", str(level.on_hand), str(level.version))
        console.print(figures)
        outcome.check(
            "event store, read model and gRPC agree on 100 units",
            stored["on_hand"] == projected.get("on_hand") == level.on_hand == 100,
            f"{stored['on_hand']} / {projected.get('on_hand')} / {level.on_hand}",
        )

        refusals = Table(
            "bad request", "status", "problem+json title", title="bad input changes nothing"
        )
        bad = [
            (
                "quantity 0",
                await http.post(
                    f"{INVENTORY_HTTP}/v1/skus/{sku}/receipts", json={"quantity": 0}, headers=admin
                ),
            ),
            ("no token", await http.get(f"{INVENTORY_HTTP}/v1/skus/{sku}")),
            (
                "another merchant reads the SKU",
                await http.get(f"{INVENTORY_HTTP}/v1/skus/{sku}", headers=stranger),
            ),
        ]
        for name, reply in bad:
            problem = reply.headers.get("content-type", "").startswith("application/problem+json")
            refusals.add_row(
                name,
                str(reply.status_code),
                reply.json().get("title", "") if problem else "(not problem+json)",
            )
        console.print(refusals)
        after = (await http.get(f"{INVENTORY_HTTP}/v1/skus/{sku}", headers=admin)).json()
        outcome.check(
            "refusals are 422, 401 and 404 problem+json",
            [r.status_code for _, r in bad] == [422, 401, 404]
            and all(
                r.headers["content-type"].startswith("application/problem+json") for _, r in bad
            ),
            ", ".join(str(r.status_code) for _, r in bad),
        )
        outcome.check(
            "refused requests changed nothing", after["version"] == 2, f"version {after['version']}"
        )
        await _flash_sale(http, issuer, merchant, admin, console, outcome)
    return outcome


async def _flash_sale(
    http: httpx.AsyncClient,
    issuer: TokenIssuer,
    merchant: str,
    admin: dict[str, str],
    console: Console,
    outcome: Outcome,
    units: int = 50,
    buyers: int = 600,
) -> None:
    """A flash sale of ``units`` to ``buyers`` tapping at once (some twice), through gRPC
    as the order service calls it; exactly ``units`` must be held."""
    now = datetime.now(UTC)
    sale_id = f"flash-{uuid4().hex[:6]}"
    reply = await http.post(
        f"{INVENTORY_HTTP}/v1/sales",
        headers=admin,
        json={
            "sale_id": sale_id,
            "sku_id": "SKU-LIPSTICK-01",
            "quantity": units,
            "starts_at": (now - timedelta(seconds=1)).isoformat(),
            "ends_at": (now + timedelta(minutes=10)).isoformat(),
            "per_user_limit": 1,
        },
    )
    if reply.status_code != 201:
        raise DemoError(f"scheduling the flash sale failed: {reply.status_code} {reply.text}")
    answers: list[tuple[str, float]] = []
    by_buyer: dict[tuple[int, bool], str] = {}
    async with authenticated_channel(
        INVENTORY_GRPC, lambda: issuer.service_token("order")
    ) as channel:
        stub = inventory_pb2_grpc.InventoryServiceStub(channel)

        async def tap(buyer: int, again: bool) -> None:
            started = time.perf_counter()
            try:
                answer = await stub.Reserve(
                    inventory_pb2.ReserveRequest(
                        merchant_id=merchant,
                        sale_id=sale_id,
                        user_id=f"viewer-{buyer}",
                        quantity=1,
                        hold_id=f"order-{sale_id}-{buyer}",
                        retry=again,
                    ),
                    timeout=10,
                )
                result = inventory_pb2.ReserveReply.Outcome.Name(answer.outcome)
            except grpc.aio.AioRpcError as error:
                result = error.code().name
            answers.append((("repeat " if again else "") + result, time.perf_counter() - started))
            by_buyer[(buyer, again)] = result

        async def tap_twice(buyer: int) -> None:
            """A client whose answer was lost sends the same hold id again, after the first.
            (Sent at once, the repeat could overtake the first, which could then be answered
            from the sold-out memory: as it should, since that client no longer listens.)"""
            await tap(buyer, False)
            await tap(buyer, True)

        repeats = range(0, buyers, 5)
        started = time.perf_counter()
        await asyncio.gather(
            *[tap_twice(b) if b in repeats else tap(b, False) for b in range(buyers)]
        )
        elapsed = time.perf_counter() - started
    counts = Counter(result for result, _ in answers)
    latencies = sorted(seconds for _, seconds in answers)
    sale_url = f"{INVENTORY_HTTP}/v1/sales/{sale_id}"
    status = (await http.get(sale_url, headers=admin)).json()
    check = (await http.get(f"{sale_url}/reconciliation", headers=admin)).json()
    ended = (await http.post(f"{sale_url}/end", headers=admin)).json()
    table = Table(
        "answer",
        "count",
        title=f"flash sale: {units} units, {len(answers)} taps in {elapsed:.2f} s",
    )
    for result, count in sorted(counts.items()):
        table.add_row(result, str(count))
    table.add_row(
        "p50 / p99 latency",
        f"{_percentile(latencies, 50):.1f} / {_percentile(latencies, 99):.1f} ms",
    )
    table.add_row("held after the spike", str(status["held"]))
    table.add_row(
        "Redis vs event store", "in agreement" if check["in_agreement"] else str(check["drifts"])
    )
    console.print(table)
    outcome.check(
        f"exactly {units} units held, none oversold",
        status["held"] == units and status["available"] == 0 and counts["RESERVED"] == units,
        f"{counts['RESERVED']} first taps reserved, held {status['held']}",
    )
    contradicted = [b for b in repeats if by_buyer[(b, True)] != by_buyer[(b, False)]]
    outcome.check(
        "a repeated tap gets the same answer as the first, never a second hold",
        not contradicted,
        f"{counts['repeat RESERVED']} repeats found their hold; {len(contradicted)} contradicted",
    )
    outcome.check(
        "Redis and the event store agree", bool(check["in_agreement"]), str(check["drifts"])
    )
    outcome.check(
        "ending the sale keeps every unit accounted for",
        ended["allocated"]
        == ended["available"] + ended["held"] + ended["sold"] + ended["returned"],
        f"allocated {ended['allocated']} = held {ended['held']} + returned {ended['returned']}",
    )


def _percentile(sorted_seconds: list[float], percent: int) -> float:
    if not sorted_seconds:
        return 0.0
    index = min(len(sorted_seconds) - 1, round(percent / 100 * (len(sorted_seconds) - 1)))
    return sorted_seconds[index] * 1000


def run_smoke(config: StackConfig, console: Console) -> int:
    """The Foundation's smoke scenario (`livecommerce smoke`)."""
    with stack.running_stack(config) as started:
        console.print(
            ("started" if started else "using the running")
            + " local stack: postgres, redis, kafka (Tansu); logs in .stack/logs/"
        )
        stack.start_services(config, restart=True)
        console.print("started " + ", ".join(p.name for p in config.services))
        try:
            outcome = asyncio.run(smoke(config, console))
        except DemoError as error:
            console.print(f"[red]demo failed:[/red] {error}")
            return 1
    console.print("stack stopped" if started else "stack left running (make down stops it)")
    summary = Table("invariant", "holds", "detail", title="checks")
    for name, passed, detail in outcome.checks:
        summary.add_row(name, "[green]yes[/green]" if passed else "[red]NO[/red]", detail)
    console.print(summary)
    console.print("[green]demo passed[/green]" if outcome.passed else "[red]demo failed[/red]")
    return 0 if outcome.passed else 1


def run_demo(config: StackConfig, console: Console, size: StreamSize) -> int:
    """The main job: start everything, run a whole live stream, check it, stop."""
    with stack.running_stack(config) as started:
        console.print(
            ("started" if started else "using the running")
            + " local stack: postgres, redis, kafka (Tansu); logs in .stack/logs/"
        )
        stack.start_services(config, restart=True)
        console.print("started " + ", ".join(p.name for p in config.services))
        began = time.monotonic()
        try:
            checks = asyncio.run(run_stream(size, console))
        except (StreamError, httpx.HTTPError) as error:
            console.print(f"[red]demo failed:[/red] {error}")
            return 1
        console.print(f"the stream ran in {time.monotonic() - began:.0f} s")
    console.print("stack stopped" if started else "stack left running (make down stops it)")
    render_checks(checks, console)
    console.print("[green]demo passed[/green]" if checks.passed else "[red]demo failed[/red]")
    return 0 if checks.passed else 1
