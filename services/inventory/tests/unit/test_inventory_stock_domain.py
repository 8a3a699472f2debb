"""SKU stock: receiving stock, replaying its events, and what a SKU id may be."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.inventory.domain.stock import (
    MAX_RECEIPT,
    MAX_SKU_ID_LENGTH,
    InvalidQuantityError,
    InvalidSkuIdError,
    ReceiveStock,
    SkuStock,
    StockEvent,
    StockReceived,
    validate_sku_id,
)
from services.kit.errors import InvalidArgumentError


def receipt(quantity: int, note: str = "") -> ReceiveStock:
    return ReceiveStock(merchant_id="merchant-1", sku_id="sku-1", quantity=quantity, note=note)


def test_receiving_stock_records_the_quantity_and_the_new_on_hand() -> None:
    stock = SkuStock("merchant-1", "sku-1", on_hand=5, version=2)

    event = stock.receive(receipt(3, note="dock 4"))

    assert event == StockReceived(sku_id="sku-1", quantity=3, on_hand_after=8, note="dock 4")
    assert stock.on_hand == 5
    assert stock.version == 2


@pytest.mark.parametrize("quantity", [1, 250, MAX_RECEIPT])
def test_accepts_a_receipt_between_one_and_the_maximum(quantity: int) -> None:
    event = SkuStock("merchant-1", "sku-1").receive(receipt(quantity))

    assert event.on_hand_after == quantity


@pytest.mark.parametrize("quantity", [0, -1, -MAX_RECEIPT, MAX_RECEIPT + 1])
def test_rejects_a_receipt_outside_one_to_the_maximum(quantity: int) -> None:
    with pytest.raises(InvalidQuantityError, match=f"got {quantity}") as rejected:
        SkuStock("merchant-1", "sku-1").receive(receipt(quantity))

    assert isinstance(rejected.value, InvalidArgumentError)
    assert rejected.value.http_status == 422


def test_applying_an_event_sets_on_hand_and_moves_the_version_on() -> None:
    stock = SkuStock("merchant-1", "sku-1", on_hand=5, version=2)

    after = stock.apply(StockReceived("sku-1", 3, 8, ""))

    assert after == SkuStock("merchant-1", "sku-1", on_hand=8, version=3)


def test_replaying_no_events_gives_a_sku_never_seen() -> None:
    stock = SkuStock.replay("merchant-1", "sku-1", [])

    assert stock == SkuStock("merchant-1", "sku-1", on_hand=0, version=0)


def test_replaying_events_gives_the_stock_they_describe() -> None:
    first = SkuStock("merchant-1", "sku-1").receive(receipt(4))
    second = SkuStock("merchant-1", "sku-1").apply(first).receive(receipt(6))

    stock = SkuStock.replay("merchant-1", "sku-1", [first, second])

    assert stock == SkuStock("merchant-1", "sku-1", on_hand=10, version=2)


def test_names_the_stream_of_a_sku_after_its_merchant_and_id() -> None:
    assert SkuStock.stream_id("merchant-1", "sku-1") == "sku:merchant-1:sku-1"


@pytest.mark.parametrize(
    "sku_id", ["sku-1", "A", "ÄÖÜ-42", "x" * MAX_SKU_ID_LENGTH, "SKU_01/red.L"]
)
def test_accepts_a_sku_id_of_printable_characters_without_spaces(sku_id: str) -> None:
    assert validate_sku_id(sku_id) == sku_id


@pytest.mark.parametrize(
    "sku_id",
    ["", "x" * (MAX_SKU_ID_LENGTH + 1), "red shirt", " sku", "sku\n", "sku\t1", "sku\x00"],
    ids=["empty", "too-long", "space", "leading-space", "newline", "tab", "nul"],
)
def test_rejects_a_sku_id_that_is_empty_too_long_or_has_spaces_or_control_characters(
    sku_id: str,
) -> None:
    with pytest.raises(InvalidSkuIdError):
        validate_sku_id(sku_id)


@given(st.lists(st.tuples(st.sampled_from(["receive", "allocate", "return"]), st.integers(1, 50))))
def test_a_sku_as_its_last_event_left_it_is_the_sku_its_whole_stream_replays_to(
    steps: list[tuple[str, int]],
) -> None:
    stock = SkuStock("merchant-1", "sku-1")
    events: list[StockEvent] = []
    for kind, quantity in steps:
        if kind == "receive":
            event: StockEvent = stock.receive(receipt(quantity))
        elif kind == "allocate" and quantity <= stock.on_hand:
            event = stock.allocate(f"sale-{len(events)}", quantity)
        elif kind == "return":
            event = stock.take_back(f"sale-{len(events)}", quantity)
        else:
            continue
        events.append(event)
        stock = stock.apply(event)

    replayed = SkuStock.replay("merchant-1", "sku-1", events)

    assert replayed == stock
    if events:
        assert SkuStock.after("merchant-1", "sku-1", events[-1], len(events)) == replayed
