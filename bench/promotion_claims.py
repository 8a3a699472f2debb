"""The coupon-claim path (a coupon rain), measured against its raw Redis ceiling.

Figures (one run, one machine):

- **a** raw ceiling: ``redis-benchmark`` calling claim.lua by EVALSHA, a new claim and a new
  buyer each call, on a drop too big to run out
- **b** ``Coupons.claim`` in-process: the Redis decision (one pipeline per burst) and the
  durable group commit (one transaction per burst), answered only once durable
- **rain** a real rain: ``--quota`` coupons, ten times as many buyers tapping at once; it
  checks that exactly the quota was handed out, each buyer at most once

Everything lives in its own database (dropped at the end) and under its own merchant id in
Redis (its keys deleted at the end; Redis is shared, nothing is flushed). Not wired into
``python -m bench`` yet: run ``python -m bench.promotion_claims [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import asyncpg

from bench.inventory_reserve import _parse_csv, _redis_benchmark_argv
from bench.load import closed_loop, percentile
from services.kit.testing import unique
from services.promotion.adapters.redis_coupons import TemplateKeys
from services.promotion.bootstrap import Promotion, promotion
from services.promotion.domain.coupons import ClaimCoupon, CreateCouponTemplate
from services.promotion.domain.money import Money
from services.promotion.domain.quote import CouponKind, CouponScope, CouponTemplate
from services.promotion.settings import PromotionSettings

BIG_QUOTA = 10_000_000


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


async def measure_raw(parts: Promotion, merchant: str, args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("redis-benchmark") is None:
        return {"figure": "a", "skipped": "redis-benchmark not found (redis-tools)"}
    template_id = await _template(parts, merchant, BIG_QUOTA)
    source = resources.files("services.promotion.adapters").joinpath("lua", "claim.lua")
    sha = str(await parts.redis.script_load(source.read_text()))
    command = [
        "EVALSHA",
        sha,
        "4",
        *TemplateKeys(merchant, template_id).all,
        "raw-__rand_int__",
        "buyer-__rand_int__",
        str(int(time.time() * 1000)),
    ]
    argv = _redis_benchmark_argv(args.redis_url, args.concurrency, args.raw_requests)
    process = await asyncio.create_subprocess_exec(
        *argv, *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        return {"figure": "a", "skipped": err.decode()[-300:]}
    rps, p50, p99 = _parse_csv(out.decode())
    return {"figure": "a", "claims_per_s": rps, "p50_ms": p50, "p99_ms": p99}


async def measure_claims(
    parts: Promotion, merchant: str, args: argparse.Namespace
) -> dict[str, Any]:
    template_id = await _template(parts, merchant, BIG_QUOTA)

    async def call(index: int, seq: int) -> str:
        result = await parts.coupons.claim(
            ClaimCoupon(merchant, template_id, f"b{index}-{seq}", f"c{index}-{seq}")
        )
        return "claimed" if result.claimed else "sold_out"

    sample = await closed_loop(
        call, concurrency=args.concurrency, duration=args.seconds, warmup=1.0
    )
    return {
        "figure": "b",
        "claims_per_s": round(sample.throughput, 1),
        "p50_ms": round(percentile(sample.latencies_ms, 0.5), 2),
        "p99_ms": round(percentile(sample.latencies_ms, 0.99), 2),
        "errors": dict(sample.errors),
    }


async def measure_rain(parts: Promotion, merchant: str, args: argparse.Namespace) -> dict[str, Any]:
    template_id = await _template(parts, merchant, args.quota)
    buyers = [f"viewer-{i}" for i in range(args.quota * 10)]
    started = time.perf_counter()
    answers = await asyncio.gather(
        *(parts.coupons.claim(ClaimCoupon(merchant, template_id, b, unique("c"))) for b in buyers),
        return_exceptions=True,
    )
    seconds = time.perf_counter() - started
    claimed = sum(1 for a in answers if not isinstance(a, BaseException) and a.claimed)
    recorded = (await parts.coupon_ledger.template(merchant, template_id)).claimed
    return {
        "figure": "rain",
        "quota": args.quota,
        "taps": len(buyers),
        "seconds": round(seconds, 3),
        "claimed": claimed,
        "recorded": recorded,
        "errors": sum(1 for a in answers if isinstance(a, BaseException)),
        "exact": claimed == recorded == args.quota,
    }


@asynccontextmanager
async def _stage(args: argparse.Namespace) -> AsyncIterator[tuple[Promotion, str]]:
    name = unique("bench_promotion")
    admin = await asyncpg.connect(args.postgres_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    merchant = unique("bench")
    settings = PromotionSettings(
        postgres_dsn=args.postgres_dsn.rsplit("/", 1)[0] + f"/{name}",
        postgres_pool_max=20,
        redis_url=args.redis_url,
    )
    try:
        async with promotion(settings) as parts:
            try:
                yield parts, merchant
            finally:
                keys = [k async for k in parts.redis.scan_iter(match=f"{{cp:{merchant}:*")]
                if keys:
                    await parts.redis.delete(*keys)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    async with _stage(args) as (parts, merchant):
        raw = await measure_raw(parts, merchant, args)
        claims = await measure_claims(parts, merchant, args)
        rain = await measure_rain(parts, merchant, args)
    if raw.get("claims_per_s"):
        claims["of_raw_ceiling"] = round(claims["claims_per_s"] / raw["claims_per_s"], 3)
    return [raw, claims, rain]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-dsn", default="postgresql://postgres@127.0.0.1:55432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:56379/0")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--raw-requests", type=int, default=200_000)
    parser.add_argument("--quota", type=int, default=1_000)
    for figure in asyncio.run(run(parser.parse_args(argv))):
        print(json.dumps(figure))
    return 0


if __name__ == "__main__":
    sys.exit(main())
