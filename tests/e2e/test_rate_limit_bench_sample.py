"""A sample of ``python -m bench.rate_limits`` against the stack's Redis: it measures the
``limits`` library's checks and the kit's and reports a rate and the CPU each cost, and
leaves no key behind. It asserts no speed."""

from __future__ import annotations

import pytest

from bench.rate_limits import run
from services.kit.redis import create_redis
from services.kit.testing import StackEndpoints
from tests.e2e.bench_report import assert_first_round_measured


@pytest.mark.parametrize("exempt", [False, True])
async def test_the_rate_limit_bench_measures_the_librarys_checks_and_the_kits(
    stack: StackEndpoints, capsys: pytest.CaptureFixture[str], exempt: bool
) -> None:
    await run(stack.redis_url, checks=256, concurrency=4, rounds=1, exempt=exempt)
    assert_first_round_measured(capsys.readouterr().out, "checks", ["limits", "kit"])
    redis = create_redis(stack.redis_url)
    try:
        assert [key async for key in redis.scan_iter(match="*bench-rl*")] == []
    finally:
        await redis.aclose()
