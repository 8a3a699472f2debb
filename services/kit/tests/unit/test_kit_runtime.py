"""The process runtime's garbage-collector tuning."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from services.kit.runtime import tune_garbage_collector, until_first_done
from services.kit.settings import ServiceSettings


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_tuning_freezes_what_is_alive_and_collects_the_young_generation_less_often() -> None:
    gc.unfreeze()
    _, middle, oldest = gc.get_threshold()
    survivor = [["alive before tuning"]]
    assert any(o is survivor for o in gc.get_objects())

    tune_garbage_collector(ServiceSettings(gc_young_threshold=25_000))

    assert gc.get_threshold() == (25_000, middle, oldest)
    assert gc.get_freeze_count() > 0
    assert not any(o is survivor for o in gc.get_objects())  # frozen: never walked again


def test_a_young_threshold_below_pythons_default_is_refused() -> None:
    with pytest.raises(ValueError, match="gc_young_threshold"):
        ServiceSettings(gc_young_threshold=10)


async def test_until_first_done_returns_when_one_ends_with_the_others_cancelled() -> None:
    never = asyncio.Event()
    waiting = asyncio.ensure_future(never.wait())

    async def ends() -> None:
        await asyncio.sleep(0)

    await until_first_done(ends(), waiting)

    assert waiting.cancelled()
