"""The message context: fresh for work with no cause, set and restored around work."""

from __future__ import annotations

import asyncio

import pytest

from services.kit.context import MessageContext, current_context, message_context


def test_gives_fresh_ids_to_work_with_no_cause() -> None:
    first = current_context()
    second = current_context()

    assert first.correlation_id
    assert first.causation_id == first.correlation_id
    assert dict(first.trace_context) == {}
    assert second.correlation_id != first.correlation_id


def test_gives_the_context_set_for_the_work_in_progress() -> None:
    context = MessageContext("corr-1", "cause-1", {"traceparent": "tp"})

    with message_context(context) as entered:
        assert entered is context
        assert current_context() is context


def test_nests_contexts_and_restores_the_outer_one() -> None:
    outer = MessageContext("corr-outer", "cause-outer")
    inner = MessageContext("corr-inner", "cause-inner")

    with message_context(outer):
        with message_context(inner):
            assert current_context() is inner
        assert current_context() is outer
    assert current_context().correlation_id not in {"corr-outer", "corr-inner"}


def test_restores_the_outer_context_when_the_work_fails() -> None:
    outer = MessageContext("corr-outer", "cause-outer")

    with message_context(outer):
        with pytest.raises(RuntimeError), message_context(MessageContext("c", "c")):
            raise RuntimeError("boom")
        assert current_context() is outer


async def test_keeps_the_contexts_of_concurrent_tasks_apart() -> None:
    async def work(name: str) -> tuple[str, str]:
        with message_context(MessageContext(f"corr-{name}", f"cause-{name}")):
            await asyncio.sleep(0)
            seen = current_context()
            return seen.correlation_id, seen.causation_id

    results = await asyncio.gather(*(work(str(i)) for i in range(5)))

    assert results == [(f"corr-{i}", f"cause-{i}") for i in range(5)]
