"""The sold-out memory: a shortcut to a refusal that lapses by itself."""

from __future__ import annotations

from services.kit.sold_out import PRUNE_AT, SoldOutMemory


def test_a_key_is_remembered_sold_out_until_its_time_is_up() -> None:
    now = [10.0]
    memory = SoldOutMemory(1.0, clock=lambda: now[0])
    memory.remember("m1", "sale-1")
    assert memory.knows("m1", "sale-1")
    assert not memory.knows("m1", "sale-2")
    assert not memory.knows("m2", "sale-1")
    now[0] = 10.999
    assert memory.knows("m1", "sale-1")
    now[0] = 11.0
    assert not memory.knows("m1", "sale-1")  # this caller asks again


def test_after_a_lapse_one_caller_asks_again_and_the_others_wait_for_its_answer() -> None:
    now = [0.0]
    memory = SoldOutMemory(1.0, clock=lambda: now[0], probe_seconds=0.5)
    memory.remember("m1", "sale-1")
    now[0] = 1.0
    assert [memory.knows("m1", "sale-1") for _ in range(3)] == [False, True, True]
    memory.remember("m1", "sale-1")  # the probe: sold out still
    now[0] = 1.9
    assert memory.knows("m1", "sale-1")
    now[0] = 2.0
    assert [memory.knows("m1", "sale-1") for _ in range(2)] == [False, True]
    memory.forget("m1", "sale-1")  # the probe: units came back
    assert not memory.knows("m1", "sale-1")
    assert not memory.knows("m1", "sale-1")


def test_a_probe_that_never_answers_is_given_up_and_the_next_caller_asks() -> None:
    now = [0.0]
    memory = SoldOutMemory(1.0, clock=lambda: now[0], probe_seconds=0.5)
    memory.remember("m1", "sale-1")
    now[0] = 1.0
    assert not memory.knows("m1", "sale-1")
    now[0] = 1.49
    assert memory.knows("m1", "sale-1")
    now[0] = 1.5
    assert not memory.knows("m1", "sale-1")


def test_a_forgotten_key_is_not_known_and_remembering_again_starts_its_time_again() -> None:
    now = [0.0]
    memory = SoldOutMemory(1.0, clock=lambda: now[0])
    memory.remember("m1", "room-1", "sku-1")
    memory.forget("m1", "room-1", "sku-1")
    memory.forget("m1", "room-1", "never-remembered")
    assert not memory.knows("m1", "room-1", "sku-1")
    memory.remember("m1", "room-1", "sku-1")
    now[0] = 0.8
    memory.remember("m1", "room-1", "sku-1")
    now[0] = 1.5
    assert memory.knows("m1", "room-1", "sku-1")


def test_lapsed_keys_nobody_asks_about_again_are_dropped_as_new_ones_come() -> None:
    now = [0.0]
    memory = SoldOutMemory(1.0, clock=lambda: now[0])
    for n in range(PRUNE_AT):
        memory.remember("m1", f"sale-{n}")
    now[0] = 2.0
    memory.remember("m1", "sale-new")
    assert len(memory) == 1
    assert memory.knows("m1", "sale-new")
