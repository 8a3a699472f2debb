"""A sample of ``make bench`` inside ``make test``: every figure of the reserve-path bench
is produced, tiny and short, and the report has every key. No timing is asserted here:
the figures of a one-second run on a test machine say nothing; ``make bench`` reports them."""

from __future__ import annotations

import json
from pathlib import Path

from bench.inventory_reserve import FIGURES, BenchOptions, run_bench
from bench.report import write_json
from services.kit.testing import StackEndpoints
from tests.e2e.bench_report import assert_every_figure_measured


async def test_a_short_bench_run_measures_every_figure_and_writes_the_report(
    stack: StackEndpoints, tmp_path: Path
) -> None:
    options = BenchOptions(
        postgres_dsn=stack.postgres_dsn,
        redis_url=stack.redis_url,
        concurrency=4,
        adapter_concurrency=4,
        duration=0.5,
        warmup=0.2,
        stock=10_000,
        history=1_000,
        rounds=1,
        redis_requests=2_000,
        logs=tmp_path / "logs",
    )
    report = await run_bench(options)
    data = json.loads(write_json(report, tmp_path / "inventory.json").read_text())

    assert set(data) == {"meta", "measurements", "targets"}
    assert_every_figure_measured(data["measurements"], set(FIGURES))
    expressions = {target["expression"] for target in data["targets"]}
    assert expressions == {"c / b", "e / d", "e / a", "p99(c80)", "sold_out / b"}
    assert all({"value", "threshold", "passed"} <= set(t) for t in data["targets"])
    assert data["measurements"]["sold_out"]["outcomes"].keys() == {"sold_out"}
    assert data["measurements"]["c"]["outcomes"].keys() == {"reserved"}
