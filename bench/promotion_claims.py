"""The coupon-claim path (a coupon rain), measured against its ceilings in one run.

Figures (one run, one machine, the same concurrency for a, b, c and e):

- **a** raw ceiling: ``redis-benchmark`` calling claim.lua by EVALSHA, a new claim and a new
  buyer each call, on a drop too big to run out
- **b** framework ceiling: an empty claim, ``python -m bench.empty_http``: the kit's HTTP
  application (token verified, buyer role, the claim's path and body models) answering
  without doing anything, served as promotion's API is
- **c** claims through promotion's HTTP API (``python -m services.promotion api`` on the
  bench's database): the per-buyer rate limit, the Redis decision (one pipeline per burst),
  the durable group commit (one transaction per burst), answered only once durable
- **e** ``Coupons.claim`` in this process: the same decision and commit without HTTP
- **rain** a real rain: ``--quota`` coupons, ten times as many buyers tapping at once through
  the HTTP API; it checks that exactly the quota was handed out, each buyer at most once

The issue's target is c >= 0.7 x b. b, c and e are measured ``--rounds`` times, interleaved,
and the best round of each is reported. Each request of b, c and the rain is a new buyer (a
viewer token of its own) with a new claim id, sent by a small HTTP/1.1 client on one
keep-alive connection per in-flight slot.

Everything lives in its own database (dropped at the end) and under its own merchant id in
Redis (its keys deleted at the end; Redis is shared, nothing is flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import uvloop

from bench.inventory_reserve import Figure, Report, Target, _parse_csv, _redis_benchmark_argv
from bench.load import Call, Sample, closed_loop
from bench.order_checkout import Buyers, HttpClients, HttpStatusError, ServerSpec, http_servers
from bench.procs import CpuWindow, batch_sizes, free_port, mean_batches, process_cpu
from bench.report import bench_console, render, write_json
from services.kit.scaffolding import throwaway_database
from services.kit.testing import unique
from services.promotion.adapters.redis_coupons import RedisCouponStock
from services.promotion.application.ports import ClaimAttempt
from services.promotion.bootstrap import Promotion, promotion
from services.promotion.domain.coupons import ClaimCoupon, CreateCouponTemplate
from services.promotion.domain.money import Money
from services.promotion.domain.quote import CouponKind, CouponScope, CouponTemplate
from services.promotion.settings import PromotionSettings

ROOT = Path(__file__).resolve().parent.parent
BIG_QUOTA = 10_000_000
TITLES = {
    "a": "raw: redis-benchmark EVALSHA claim.lua",
    "b": "framework: empty claim over HTTP",
    "c": "claim via promotion's HTTP API",
    "e": "Coupons.claim in-process",
    "rain": "a coupon rain via HTTP",
}


@dataclass
class ClaimsOptions:
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:55432/postgres"
    redis_url: str = "redis://127.0.0.1:56379/0"
    concurrency: int = 64
    duration: float = 4.0
    warmup: float = 1.0
    rounds: int = 3
    raw_requests: int = 200_000
    quota: int = 1_000
    logs: Path = ROOT / "artifacts" / "bench" / "logs"
    progress: Callable[[str], None] = field(default=lambda step: None)


@dataclass(frozen=True)
class Stage:
    parts: Promotion
    merchant: str
    dsn: str


async def _template(parts: Promotion, merchant: str, quota: int) -> str:
    start = datetime.now(UTC) - timedelta(minutes=1)
    created = await parts.coupons.create_template(
        CreateCouponTemplate(
            merchant_id=merchant,
            template=CouponTemplate(
                template_id=unique("rain"),
                kind=CouponKind.FIXED_AMOUNT,
                scope=CouponScope(merchant),
                valid_from=start,
                valid_until=start + timedelta(hours=2),
                amount=Money(500, "CNY"),
            ),
            quota=quota,
        )
    )
    return created.template_id


def _figure(key: str, concurrency: int, sample: Sample, cpu: dict[str, float]) -> Figure:
    return Figure.of(key, str(concurrency), sample, title=TITLES[key], cpu_percent=cpu)


async def measure_raw(stage: Stage, options: ClaimsOptions) -> Figure:
    concurrency = str(options.concurrency)
    if shutil.which("redis-benchmark") is None:
        return Figure("a", TITLES["a"], concurrency, skipped="redis-benchmark not found")
    template_id = await _template(stage.parts, stage.merchant, BIG_QUOTA)
    source = resources.files("services.promotion.adapters").joinpath("lua", "claim.lua")
    sha = str(await stage.parts.redis.script_load(source.read_text()))
    stock = RedisCouponStock(stage.parts.redis, stage.parts.settings.claim_rate_limit)
    attempt = ClaimAttempt(
        ClaimCoupon(stage.merchant, template_id, "buyer-__rand_int__", "raw-__rand_int__")
    )
    call = stock.claim_call(attempt, int(time.time() * 1000))
    command = ["EVALSHA", sha, "6", *(str(part) for part in call)]
    argv = _redis_benchmark_argv(options.redis_url, options.concurrency, options.raw_requests)
    window = CpuWindow(redis=stage.parts.redis)
    await window.start()
    process = await asyncio.create_subprocess_exec(
        *argv, *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    await window.stop()
    if process.returncode != 0:
        return Figure("a", TITLES["a"], concurrency, skipped=err.decode()[-300:])
    rps, p50, p99 = _parse_csv(out.decode())
    return Figure(
        "a",
        TITLES["a"],
        concurrency,
        throughput=rps,
        p50_ms=p50,
        p99_ms=p99,
        cpu_percent=window.finish(),
    )


def claim_request(host: str, port: int, merchant: str, template_id: str) -> Callable[..., bytes]:
    """The bytes of one claim: a buyer's token and a claim id into the route's request."""
    head = (
        f"POST /v1/merchants/{merchant}/coupon-templates/{template_id}/claims HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\nContent-Type: application/json\r\n"
    ).encode()

    def request(token: str, claim_id: str) -> bytes:
        body = json.dumps({"claim_id": claim_id}, separators=(",", ":")).encode()
        return b"".join(
            (
                head,
                f"Content-Length: {len(body)}\r\nAuthorization: Bearer {token}\r\n\r\n".encode(),
                body,
            )
        )

    return request


async def _claim_once(clients: HttpClients, slot: int, request: bytes) -> str:
    status, answer = await clients.send(slot, request)
    if status != 200:
        raise HttpStatusError(status, answer)
    if b'"claimed"' in answer:
        return "claimed"
    if b'"sold_out"' in answer:
        return "sold_out"
    raise HttpStatusError(status, answer)


async def _measured(key: str, call: Call, window: CpuWindow, options: ClaimsOptions) -> Figure:
    """A closed loop of ``call`` with the CPU window over its measured part."""
    measured = asyncio.create_task(
        closed_loop(
            call,
            concurrency=options.concurrency,
            duration=options.duration,
            warmup=options.warmup,
        )
    )
    await asyncio.sleep(options.warmup)
    await window.start()
    sample = await measured
    await window.stop()
    client = 100 * sample.cpu_seconds / sample.seconds if sample.seconds else 0.0
    return _figure(key, options.concurrency, sample, window.finish(client=round(client, 1)))


async def measure_http(
    key: str, port: int, pid: int, stage: Stage, options: ClaimsOptions, buyers: Buyers
) -> Figure:
    """b or c: a closed loop of new buyers claiming from a drop that cannot run out."""
    template_id = await _template(stage.parts, stage.merchant, BIG_QUOTA)
    clients = HttpClients(f"http://127.0.0.1:{port}", options.concurrency)
    await clients.connect_all()
    request = claim_request("127.0.0.1", port, stage.merchant, template_id)
    tag = unique(key)
    buyers.prepare(int(options.concurrency * 4 + 5_000 * (options.duration + options.warmup)))

    async def call(slot: int, seq: int) -> str:
        return await _claim_once(clients, slot, request(buyers.next_token(), f"{tag}-{slot}-{seq}"))

    window = CpuWindow({"server": lambda: process_cpu(pid)}, redis=stage.parts.redis)
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        before = await batch_sizes(metrics_url)
        figure = await _measured(key, call, window, options)
        batches = mean_batches(before, await batch_sizes(metrics_url))
        if batches:
            shown = ", ".join(f"{stage} {mean:g}" for stage, mean in batches.items())
            figure.detail = f"claims per batch: {shown}"
        return figure
    finally:
        clients.close()


async def measure_in_process(stage: Stage, options: ClaimsOptions) -> Figure:
    """e: ``Coupons.claim`` called from this process, new buyers on a drop that cannot run out."""
    template_id = await _template(stage.parts, stage.merchant, BIG_QUOTA)
    coupons = stage.parts.coupons
    tag = unique("e")  # claim ids are coupon ids: new in every round

    async def call(slot: int, seq: int) -> str:
        result = await coupons.claim(
            ClaimCoupon(stage.merchant, template_id, f"{tag}-b{slot}-{seq}", f"{tag}-{slot}-{seq}")
        )
        return "claimed" if result.claimed else "sold_out"

    return await _measured("e", call, CpuWindow(redis=stage.parts.redis), options)


async def measure_rain(port: int, stage: Stage, options: ClaimsOptions, buyers: Buyers) -> Figure:
    """``quota`` coupons, ten times as many buyers at once, each tapping once over HTTP."""
    template_id = await _template(stage.parts, stage.merchant, options.quota)
    taps = options.quota * 10
    slots = min(taps, 1_000)
    clients = HttpClients(f"http://127.0.0.1:{port}", slots)
    await clients.connect_all()
    request = claim_request("127.0.0.1", port, stage.merchant, template_id)
    buyers.prepare(taps)
    tokens = [buyers.next_token() for _ in range(taps)]
    sample = Sample()
    next_tap = 0

    async def slot(index: int) -> None:
        nonlocal next_tap
        while next_tap < taps:
            tap = next_tap
            next_tap += 1
            began = time.perf_counter()
            try:
                outcome = await _claim_once(clients, index, request(tokens[tap], unique("rain")))
            except Exception as error:
                sample.errors[type(error).__name__] += 1
                continue
            sample.ops += 1
            sample.outcomes[outcome] += 1
            sample.latencies_ms.append((time.perf_counter() - began) * 1000)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(slot(i) for i in range(slots)))
    finally:
        clients.close()
    sample.seconds = time.perf_counter() - started
    recorded = (await stage.parts.coupon_ledger.template(stage.merchant, template_id)).claimed
    claimed = sample.outcomes["claimed"]
    figure = _figure("rain", slots, sample, {})
    figure.detail = (
        f"quota {options.quota:,}, {taps:,} taps in {sample.seconds:.2f} s: "
        f"{claimed:,} claimed, {recorded:,} recorded"
    )
    figure.outcomes["exact"] = int(claimed == recorded == options.quota)
    return figure


def targets_of(figures: dict[str, Figure]) -> list[Target]:
    def ratio(top: str, bottom: str) -> float | None:
        a, b = figures.get(top), figures.get(bottom)
        if a is None or b is None or a.skipped or b.skipped or b.throughput <= 0:
            return None
        return round(a.throughput / b.throughput, 3)

    rain = figures.get("rain")
    return [
        Target("claims vs framework", "c / b", ratio("c", "b"), 0.7),
        Target(
            "rain: claims == quota, recorded",
            "rain exact",
            float(rain.outcomes.get("exact", 0)) if rain is not None else None,
            1.0,
        ),
    ]


@asynccontextmanager
async def _stage(options: ClaimsOptions) -> AsyncIterator[Stage]:
    merchant = unique("bench")
    async with throwaway_database(options.postgres_dsn, "bench_promotion") as dsn:
        settings = PromotionSettings(
            postgres_dsn=dsn, postgres_pool_max=20, redis_url=options.redis_url
        )
        async with promotion(settings) as parts:
            try:
                yield Stage(parts, merchant, dsn)
            finally:
                keys = [k async for k in parts.redis.scan_iter(match=f"{{cp:{merchant}:*")]
                if keys:
                    await parts.redis.delete(*keys)


def _best(figures: Sequence[Figure]) -> Figure:
    best = max(figures, key=lambda f: f.throughput)
    best.rounds = [f.throughput for f in figures]
    return best


async def run_claims_bench(options: ClaimsOptions) -> Report:
    started = datetime.now(UTC)
    load = list(os.getloadavg())
    async with _stage(options) as stage:
        options.progress("a: redis-benchmark on claim.lua")
        raw = await measure_raw(stage, options)
        empty_port, api_port = free_port(), free_port()
        env = {
            **os.environ,
            "PROMOTION_POSTGRES_DSN": stage.dsn,
            "PROMOTION_REDIS_URL": options.redis_url,
            "PROMOTION_HTTP_PORT": str(api_port),
            "PROMOTION_LOG_LEVEL": "WARNING",
        }
        specs = [
            ServerSpec(
                (sys.executable, "-m", "bench.empty_http", str(empty_port)),
                empty_port,
                "/healthz",
                options.logs / "claims-empty-http.log",
            ),
            ServerSpec(
                (sys.executable, "-m", "services.promotion", "api"),
                api_port,
                "/readyz",
                options.logs / "claims-promotion-api.log",
            ),
        ]
        buyers = Buyers(unique("claimer"))
        rounds: dict[str, list[Figure]] = {"b": [], "c": [], "e": []}
        async with http_servers(specs, env) as (empty, api):
            for index in range(options.rounds):
                options.progress(f"round {index + 1} of {options.rounds}: e, b, c")
                rounds["e"].append(await measure_in_process(stage, options))
                rounds["b"].append(
                    await measure_http("b", empty_port, empty.pid, stage, options, buyers)
                )
                rounds["c"].append(
                    await measure_http("c", api_port, api.pid, stage, options, buyers)
                )
            options.progress(f"the rain: {options.quota:,} coupons, {options.quota * 10:,} taps")
            rain = await measure_rain(api_port, stage, options, buyers)
    figures = {"a": raw, "b": _best(rounds["b"]), "c": _best(rounds["c"])}
    figures["e"] = _best(rounds["e"])
    figures["rain"] = rain
    meta = {
        "title": "coupon claims",
        "started": started.isoformat(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_average_at_start": load,
        "duration_seconds": options.duration,
        "warmup_seconds": options.warmup,
        "rounds": options.rounds,
        "concurrency": options.concurrency,
    }
    return Report(meta=meta, figures=figures, targets=targets_of(figures))


def _parser() -> argparse.ArgumentParser:
    defaults = ClaimsOptions()
    parser = argparse.ArgumentParser(
        prog="python -m bench claims", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--postgres-dsn", default=defaults.postgres_dsn)
    parser.add_argument("--redis-url", default=defaults.redis_url)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--duration", type=float, default=defaults.duration)
    parser.add_argument("--warmup", type=float, default=defaults.warmup)
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--raw-requests", type=int, default=defaults.raw_requests)
    parser.add_argument("--quota", type=int, default=defaults.quota)
    parser.add_argument("--output", type=Path, default=ROOT / "artifacts" / "bench" / "claims.json")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    console = bench_console()
    options = ClaimsOptions(
        postgres_dsn=args.postgres_dsn,
        redis_url=args.redis_url,
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        rounds=max(1, args.rounds),
        raw_requests=args.raw_requests,
        quota=args.quota,
        logs=args.output.parent / "logs",
        progress=lambda step: console.print(f"[dim]- {step}[/dim]"),
    )
    report = uvloop.run(run_claims_bench(options))
    render(report, console)
    for key in ("c", "rain"):
        if key in report.figures and report.figures[key].detail:
            console.print(f"{key}: {report.figures[key].detail}")
    console.print(f"written: {write_json(report, args.output)}")
    return 1 if args.strict and report.missed else 0


if __name__ == "__main__":
    sys.exit(main())
