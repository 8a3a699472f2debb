"""A sample of the coupon-claim bench inside ``make test``: every figure is produced, tiny
and short, through the real promotion API the bench starts, and the rain hands out exactly
its quota. No timing is asserted: ``make bench`` reports the figures."""

from __future__ import annotations

import json
from pathlib import Path

from bench.promotion_claims import TITLES, ClaimsOptions, run_claims_bench
from bench.report import write_json
from services.kit.testing import StackEndpoints
from tests.e2e.bench_report import assert_every_figure_measured


async def test_a_short_claims_bench_measures_every_figure_and_the_rain_is_exact(
    stack: StackEndpoints, tmp_path: Path
) -> None:
    options = ClaimsOptions(
        postgres_dsn=stack.postgres_dsn,
        redis_url=stack.redis_url,
        concurrency=4,
        duration=0.5,
        warmup=0.2,
        rounds=1,
        raw_requests=2_000,
        quota=20,
        logs=tmp_path / "logs",
    )
    report = await run_claims_bench(options)
    data = json.loads(write_json(report, tmp_path / "claims.json").read_text())

    assert_every_figure_measured(data["measurements"], set(TITLES), raw_counts_ops=False)
    for key in ("b", "c", "e"):
        assert data["measurements"][key]["outcomes"].keys() == {"claimed"}, key
    rain = data["measurements"]["rain"]["outcomes"]
    assert rain == {"claimed": 20, "sold_out": 180, "exact": 1}
    assert {t["expression"] for t in data["targets"]} == {"c / b", "rain exact"}
