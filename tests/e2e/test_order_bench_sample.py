"""A sample of the order checkout bench (``python -m bench.order_checkout --quick``): the
three systems at 4 and 16 buyers, half-second phases, against the running services. It
checks that nothing was oversold and that every figure was measured; it asserts no speed
(the figures of a few seconds on a shared test machine say nothing; the bench reports them)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.order_checkout import QUICK_LEVELS, SYSTEMS, OrderBenchOptions, run_order_bench
from bench.report import write_json
from services.kit.testing import StackEndpoints


async def test_a_quick_order_bench_measures_every_figure_and_oversells_nothing(
    stack: StackEndpoints, tmp_path: Path
) -> None:
    options = OrderBenchOptions.quick(stack.postgres_dsn, stack.redis_url, logs=tmp_path / "logs")
    report = await run_order_bench(options)
    data = json.loads(write_json(report, tmp_path / "orders.json").read_text())

    expected = {f"{system}@{n}" for system in SYSTEMS for n in QUICK_LEVELS} | {
        f"{system}@{n} sold out" for system in ("naive", "real") for n in QUICK_LEVELS
    }
    measurements = data["measurements"]
    assert set(measurements) == expected
    for key, figure in measurements.items():
        assert figure["skipped"] is None, (key, figure["skipped"])
        assert not figure["errors"], (key, figure["errors"])
        assert figure["ops"] > 0, (key, figure)
        assert figure["outcomes"].get("placed", 0) > 0, (key, figure["outcomes"])
        assert figure["answered_per_s"] > 0, (key, figure)
        assert figure["cpu_ms"].get("path", 0) > 0, (key, figure["cpu_ms"])
        if figure["system"] == "bare":
            continue
        check = figure["check"]
        assert check["passed"], (key, check)
        assert check["oversold"] == 0, (key, check)
        assert check["answered_201"] <= check["allocated"], (key, check)
        if figure["phase"] == "sold_out":
            # the sale ran out: answers were mostly "sold out", and it sold exactly its units
            assert figure["outcomes"].get("sold_out", 0) > 0, (key, figure["outcomes"])
            assert figure["outcomes"]["placed"] == figure["units"], (key, figure)

    oversold = [t for t in data["targets"] if t["expression"] == "oversold"]
    assert oversold, data["targets"]
    assert oversold[0]["value"] == 0
    assert oversold[0]["passed"] is True
