"""A sample of ``python -m bench.pool_reset`` against the stack's Postgres: it measures both
pools and reports a rate and the CPU each side spent. It asserts no speed."""

from __future__ import annotations

import re

import pytest

from bench.pool_reset import run
from services.kit.testing import StackEndpoints


async def test_the_pool_bench_measures_a_default_pool_and_the_kits(
    stack: StackEndpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    await run(stack.postgres_dsn, queries=400, concurrency=4, rounds=1)
    lines = capsys.readouterr().out.splitlines()
    figures = [line for line in lines if line.startswith("round 1")]
    assert [("default" in f, "kit" in f) for f in figures] == [(True, False), (False, True)]
    for figure in figures:
        found = re.search(r"([\d,]+) queries/s\s+client\s+([\d.]+)", figure)
        assert found is not None, figure
        rate, client = found.groups()
        assert int(rate.replace(",", "")) > 0
        assert float(client) > 0
