"""Checks the bench samples share: every figure of a report was measured."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Set
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
