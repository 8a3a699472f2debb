"""The main job, small: a whole live stream scripted through the public APIs of the
service processes `make demo` starts, with every invariant checked."""

from __future__ import annotations

import asyncio
import io

from rich.console import Console

from devstack import stack as devstack_stack
from devstack.config import StackConfig
from devstack.stream import StreamSize, render_checks, run_stream
from services.kit.testing import StackEndpoints


def test_a_small_live_stream_runs_end_to_end_and_every_invariant_holds(
    stack: StackEndpoints,
) -> None:
    devstack_stack.start_services(StackConfig(), restart=True)
    output = io.StringIO()
    console = Console(file=output, width=140)
    checks = asyncio.run(run_stream(StreamSize.small(), console))
    render_checks(checks, console)
    failed = [(name, detail) for name, passed, detail in checks.rows if not passed]
    assert len(checks.rows) >= 12, output.getvalue()
    assert not failed, f"{failed}\n{output.getvalue()}"
