"""The process runtime's garbage-collector tuning."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.kit.runtime import tune_garbage_collector
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
