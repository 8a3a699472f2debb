"""A sample of ``python -m bench.pool_reset`` against the stack's Postgres: it measures both
pools and reports a rate and the CPU each side spent. It asserts no speed."""

from __future__ import annotations

import pytest

from bench.pool_reset import run
from services.kit.testing import StackEndpoints
from tests.e2e.bench_report import assert_first_round_measured


async def test_the_pool_bench_measures_a_default_pool_and_the_kits(
    stack: StackEndpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    await run(stack.postgres_dsn, queries=400, concurrency=4, rounds=1)

    assert_first_round_measured(capsys.readouterr().out, "queries", ["default", "kit"])
