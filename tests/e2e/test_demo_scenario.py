"""The Foundation's smoke scenario, run exactly as `make demo` runs it, against the
service processes supervisord starts on the real local stack."""

from __future__ import annotations

import asyncio
import io

from rich.console import Console

from devstack import stack as devstack_stack
from devstack.config import StackConfig
from devstack.demo import smoke
from services.kit.testing import StackEndpoints


def test_demo_scenario_passes_every_check_through_the_running_services(
    stack: StackEndpoints,
) -> None:
    config = StackConfig()
    devstack_stack.start_services(config, restart=True)
    output = io.StringIO()
    outcome = asyncio.run(smoke(config, Console(file=output, width=120)))
    failed = [(name, detail) for name, passed, detail in outcome.checks if not passed]
    assert outcome.checks, "the scenario checked nothing"
    assert not failed, f"{failed}\n{output.getvalue()}"
    assert "StockReceived +60" in output.getvalue()
