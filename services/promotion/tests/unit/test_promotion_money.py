"""Money in whole minor units of one currency, and allocation that always adds up."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.kit.errors import InvalidArgumentError
from services.promotion.domain.money import (
    MAX_AMOUNT,
    CurrencyMismatchError,
    InvalidAllocationError,
    InvalidAmountError,
    InvalidCurrencyError,
    Money,
    NegativeAmountError,
    allocate,
    allocate_capped,
)


def test_money_adds_subtracts_and_compares_within_one_currency() -> None:
    assert Money(300, "CNY") + Money(34, "CNY") == Money(334, "CNY")
    assert Money(300, "CNY") - Money(300, "CNY") == Money.zero("CNY")
    assert Money(299, "CNY") < Money(300, "CNY") <= Money(300, "CNY")
    assert Money(7, "CNY").times(3) == Money(21, "CNY")
    assert str(Money(1234, "CNY")) == "CNY 1234"


@pytest.mark.parametrize(
    ("amount", "basis_points", "down", "up"),
    [
        pytest.param(999, 1500, 149, 150, id="15pct-of-999"),
        pytest.param(1000, 1000, 100, 100, id="exact"),
        pytest.param(1, 5000, 0, 1, id="half-a-fen"),
        pytest.param(0, 10_000, 0, 0, id="zero"),
    ],
)
def test_a_rate_rounds_down_for_discounts_and_up_for_floors(
    amount: int, basis_points: int, down: int, up: int
) -> None:
    assert Money(amount, "CNY").percent_down(basis_points).amount == down
    assert Money(amount, "CNY").percent_up(basis_points).amount == up


@pytest.mark.parametrize(
    ("amount", "currency", "error"),
    [
        pytest.param(-1, "CNY", NegativeAmountError, id="negative"),
        pytest.param(1.5, "CNY", InvalidAmountError, id="float"),
        pytest.param(True, "CNY", InvalidAmountError, id="bool"),
        pytest.param(MAX_AMOUNT + 1, "CNY", InvalidAmountError, id="beyond-int64"),
        pytest.param(1, "cny", InvalidCurrencyError, id="lower-case-currency"),
        pytest.param(1, "YUAN", InvalidCurrencyError, id="four-letter-currency"),
        pytest.param(1, "", InvalidCurrencyError, id="no-currency"),
    ],
)
def test_refuses_money_that_is_not_whole_non_negative_minor_units_of_a_currency(
    amount: Any, currency: str, error: type[InvalidArgumentError]
) -> None:
    with pytest.raises(error) as refused:
        Money(amount, currency)

    assert refused.value.http_status == 422


@pytest.mark.parametrize(
    "combine",
    [
        pytest.param(lambda a, b: a + b, id="add"),
        pytest.param(lambda a, b: a - b, id="subtract"),
        pytest.param(lambda a, b: a < b, id="compare"),
    ],
)
def test_refuses_to_mix_currencies(combine: Any) -> None:
    with pytest.raises(CurrencyMismatchError, match="CNY with USD"):
        combine(Money(1, "CNY"), Money(1, "USD"))


def test_refuses_a_subtraction_below_zero() -> None:
    with pytest.raises(NegativeAmountError, match="would be negative"):
        Money(1, "CNY") - Money(2, "CNY")


@pytest.mark.parametrize(
    ("amount", "weights", "parts"),
    [
        pytest.param(100, [333, 333, 334], [33, 33, 34], id="333-333-334"),
        pytest.param(100, [1, 1, 1], [34, 33, 33], id="ties-to-the-earlier"),
        pytest.param(2, [1, 1, 1], [1, 1, 0], id="two-over-three"),
        pytest.param(7, [3, 5, 11], [1, 2, 4], id="largest-remainder"),
        pytest.param(10, [0, 1, 0], [0, 10, 0], id="zero-weights-get-nothing"),
        pytest.param(0, [0, 0], [0, 0], id="nothing-over-nothing"),
        pytest.param(0, [], [], id="no-parts"),
    ],
)
def test_allocation_splits_by_weight_and_sums_exactly(
    amount: int, weights: list[int], parts: list[int]
) -> None:
    assert list(allocate(amount, weights)) == parts


@pytest.mark.parametrize(
    ("amount", "weights", "caps", "parts"),
    [
        pytest.param(1000, [1000, 1000], [200, 1000], [200, 800], id="cap-passes-the-rest-on"),
        pytest.param(10, [5, 5, 5], [1, 100, 100], [1, 5, 4], id="rest-reallocated-by-weight"),
        pytest.param(5, [0, 0], [2, 3], [2, 3], id="no-weights-fall-back-to-caps"),
        pytest.param(3, [1, 1], [3, 0], [3, 0], id="a-zero-cap-takes-nothing"),
    ],
)
def test_capped_allocation_never_passes_a_cap(
    amount: int, weights: list[int], caps: list[int], parts: list[int]
) -> None:
    assert list(allocate_capped(amount, weights, caps)) == parts


@pytest.mark.parametrize(
    "allocation",
    [
        pytest.param(lambda: allocate(1, [0, 0]), id="no-weight-to-carry-it"),
        pytest.param(lambda: allocate(1, []), id="no-parts"),
        pytest.param(lambda: allocate_capped(5, [1, 1], [2, 2]), id="caps-too-small"),
        pytest.param(lambda: allocate_capped(1, [1, 1], [2]), id="caps-and-weights-differ"),
    ],
)
def test_refuses_an_allocation_that_cannot_add_up(allocation: Any) -> None:
    with pytest.raises(InvalidAllocationError):
        allocation()


def test_refuses_negative_weights() -> None:
    with pytest.raises(NegativeAmountError):
        allocate(10, [5, -1])


@given(
    amount=st.integers(0, 10**9),
    weights=st.lists(st.integers(0, 10**6), min_size=1, max_size=12).filter(any),
)
def test_allocated_parts_always_sum_to_the_amount_and_stay_within_one_of_the_share(
    amount: int, weights: list[int]
) -> None:
    parts = allocate(amount, weights)

    assert sum(parts) == amount
    for part, weight in zip(parts, weights, strict=True):
        exact_times_sum = amount * weight
        assert part * sum(weights) <= exact_times_sum + sum(weights)
        assert (part + 1) * sum(weights) > exact_times_sum


@given(data=st.data())
def test_capped_parts_always_sum_to_the_amount_and_respect_every_cap(data: st.DataObject) -> None:
    caps = data.draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=12))
    weights = [data.draw(st.integers(cap, cap + 10**6)) for cap in caps]
    amount = data.draw(st.integers(0, sum(caps)))

    parts = allocate_capped(amount, weights, caps)

    assert sum(parts) == amount
    assert all(0 <= part <= cap for part, cap in zip(parts, caps, strict=True))
