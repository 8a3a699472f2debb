"""Checks the bench samples share: every figure of a report was measured."""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence, Set
from typing import Any


def assert_every_figure_measured(
    measurements: Mapping[str, Any], keys: Set[str], *, raw_counts_ops: bool = True
) -> None:
    """The report has exactly ``keys``, each measured without errors; ``a`` (redis-benchmark)
    may be skipped, and says so, where the binary is missing, and reports only a rate when
    ``raw_counts_ops`` is false."""
    assert set(measurements) == set(keys)
    for key, figure in measurements.items():
        if key == "a" and shutil.which("redis-benchmark") is None:
            assert figure["skipped"]
            continue
        assert figure["skipped"] is None, (key, figure["skipped"])
        assert figure["throughput"] > 0, (key, figure)
        if key != "a" or raw_counts_ops:
            assert figure["ops"] > 0, (key, figure)
        assert not figure["errors"], (key, figure["errors"])


def assert_first_round_measured(printed: str, unit: str, sides: Sequence[str]) -> None:
    """A comparison bench's printed first round (``round 1  <side> <rate> <unit>/s  client
    <µs> ...``): one line per side, in order, each with a rate and the client's CPU."""
    figures = [line for line in printed.splitlines() if line.startswith("round 1")]
    assert len(figures) == len(sides), figures
    for figure, side in zip(figures, sides, strict=True):
        assert side in figure, (side, figure)
        found = re.search(rf"([\d,]+) {unit}/s\s+client\s+([\d.]+)", figure)
        assert found is not None, figure
        rate, client = found.groups()
        assert int(rate.replace(",", "")) > 0, figure
        assert float(client) > 0, figure
