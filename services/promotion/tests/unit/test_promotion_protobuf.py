"""The mapping between quote domain types and promotion.v1 messages: every field survives
a round trip both ways (through bytes), absent optional fields stay absent, and what the
wire allows but the domain cannot say is refused as an invalid argument."""

from __future__ import annotations

from datetime import UTC

import pytest

from livecommerce.promotion.v1 import promotion_pb2 as pb
from services.kit.errors import InvalidArgumentError
from services.promotion.adapters.protobuf import (
    COUPON_KINDS,
    PROMOTION_KINDS,
    coupon_kind_from_proto,
    promotion_kind_from_proto,
    quote_from_proto,
    quote_to_proto,
    request_from_proto,
    request_to_proto,
    rules_from_proto,
)
from services.promotion.domain.quote import (
    CouponKind,
    PromotionKind,
    QuoteRequest,
    StackingRules,
    quote,
)
from services.promotion.tests.unit.quote_helpers import (
    AT,
    DAY,
    cny,
    coupon,
    fixed,
    flash,
    free_shipping,
    group,
    line,
    min_percent,
    min_price,
    percent,
    request,
    room_special,
    scope,
    store,
    threshold,
)


def everything() -> QuoteRequest:
    """A request that sets every field the domain has."""
    return request(
        line("TEE", 2, 9_900, min_price(4_000)),
        line("CAP", 3, 3_333, min_percent(5_050)),
        line("SOCKS", 1, 1_001),
        line("BAG", 1, 20_000),
        group_id="g-1",
        flash_sale_prices=(flash("TEE", 5_900), flash("CAP", 3_000, "fs-2")),
        group_prices=(group("SOCKS", 900),),
        room_special_prices=(room_special("CAP", 2_999), room_special("BAG", 100, room_id="r-2")),
        store_discounts=(store(1_250, "BAG", "SOCKS"), store(500, promotion_id="sd-2")),
        coupons=(
            coupon(percent(1_500, cap=5_000, stackable=True), "c-1"),
            coupon(
                threshold(1_000, 300, stackable=True, scope=scope("room-1", "BAG", "SOCKS")),
                "c-2",
            ),
            coupon(free_shipping(stackable=True, valid_until=AT + 3 * DAY), "c-3"),
            coupon(fixed(100, stackable=True, threshold=cny(200)), "c-4"),
        ),
        shipping_fee=cny(800),
    )


def through_bytes(message: pb.QuoteRequest | pb.QuoteReply) -> bytes:
    return message.SerializeToString(deterministic=True)


def test_a_request_survives_the_round_trip_through_the_wire() -> None:
    original = everything()
    wire = pb.QuoteRequest.FromString(through_bytes(request_to_proto(original)))

    assert request_from_proto(wire) == original
    assert not wire.HasField("rules")
    assert rules_from_proto(wire) == StackingRules()


def test_a_minimal_request_keeps_its_absent_fields_absent() -> None:
    original = request(line("TEE", 1, 100), room_id=None, channel="")
    wire = request_to_proto(original)

    assert not wire.HasField("shipping_fee")
    assert wire.room_id == ""
    assert wire.group_id == ""
    back = request_from_proto(wire)
    assert back == original
    assert back.room_id is None
    assert back.group_id is None
    assert back.shipping_fee is None


def test_percent_bps_is_present_only_on_percent_coupons() -> None:
    wire = request_to_proto(everything())

    assert [c.template.HasField("percent_bps") for c in wire.coupons] == [
        True,
        False,
        False,
        False,
    ]
    assert wire.coupons[0].template.percent_bps == 1_500
    assert not wire.coupons[0].template.HasField("amount")
    assert wire.coupons[0].template.cap.amount_minor == 5_000


@pytest.mark.parametrize(
    "rules",
    [
        StackingRules(),
        StackingRules(coupon_on_flash_sale=True),
        StackingRules(ladder=(PromotionKind.STORE_DISCOUNT, PromotionKind.FLASH_SALE)),
        StackingRules(ladder=()),
    ],
)
def test_stacking_rules_survive_the_round_trip(rules: StackingRules) -> None:
    wire = pb.QuoteRequest.FromString(through_bytes(request_to_proto(everything(), rules)))

    assert wire.HasField("rules")
    assert rules_from_proto(wire) == rules


def test_the_merchant_the_caller_acts_for_replaces_the_messages() -> None:
    wire = request_to_proto(everything())
    wire.merchant_id = ""

    assert request_from_proto(wire, "m-1") == everything()


@pytest.mark.parametrize("coupon_on_flash_sale", [False, True])
def test_a_quote_survives_the_round_trip_through_the_wire(coupon_on_flash_sale: bool) -> None:
    rules = StackingRules(coupon_on_flash_sale=coupon_on_flash_sale)
    original = quote(everything(), rules)
    wire = pb.QuoteReply.FromString(through_bytes(quote_to_proto(original)))

    assert quote_from_proto(wire) == original
    assert len(wire.lines) == 4
    assert len(wire.coupons) == 4
    for applied in wire.coupons:
        assert len(applied.shares) == len(wire.lines)
        assert all(r.startswith(f"coupon {applied.coupon_id}:") for r in applied.reasons)
        assert set(applied.reasons) <= set(wire.explanation)


def test_a_line_without_promotion_has_no_promotion_field() -> None:
    wire = quote_to_proto(quote(request(line("TEE", 1, 100))))

    assert not wire.lines[0].HasField("promotion")
    assert quote_from_proto(wire).lines[0].promotion is None


def test_every_kind_has_a_wire_value_and_back() -> None:
    assert set(PROMOTION_KINDS) == set(PromotionKind)
    assert set(COUPON_KINDS) == set(CouponKind)
    for kind, value in PROMOTION_KINDS.items():
        assert promotion_kind_from_proto(value) is kind
    for coupon_kind, wire_kind in COUPON_KINDS.items():
        assert coupon_kind_from_proto(wire_kind) is coupon_kind


@pytest.mark.parametrize("value", [pb.PROMOTION_KIND_UNSPECIFIED, 99])
def test_an_unspecified_or_unknown_promotion_kind_is_refused(value: int) -> None:
    with pytest.raises(InvalidArgumentError, match="not a promotion kind"):
        promotion_kind_from_proto(value)


@pytest.mark.parametrize("value", [pb.COUPON_KIND_UNSPECIFIED, 99])
def test_an_unspecified_or_unknown_coupon_kind_is_refused(value: int) -> None:
    with pytest.raises(InvalidArgumentError, match="not a coupon kind"):
        coupon_kind_from_proto(value)


def test_a_time_is_read_as_an_aware_utc_datetime() -> None:
    wire = request_to_proto(everything())

    at = request_from_proto(wire).at
    assert at == AT
    assert at.tzinfo is UTC


def test_a_time_outside_the_datetime_range_is_refused() -> None:
    wire = request_to_proto(everything())
    wire.at.seconds = 2**62

    with pytest.raises(InvalidArgumentError, match="not a valid time"):
        request_from_proto(wire)


@pytest.mark.parametrize(
    ("clear", "words"),
    [
        (lambda m: m.ClearField("at"), "is required"),
        (lambda m: m.lines[0].ClearField("list_unit_price"), "list price of TEE is required"),
        (lambda m: m.flash_sale_prices[0].ClearField("unit_price"), "flash sale fs-1"),
        (lambda m: m.coupons[0].ClearField("template"), "needs its template"),
        (lambda m: m.coupons[0].template.ClearField("scope"), "needs a scope"),
        (lambda m: m.coupons[0].template.ClearField("valid_until"), "valid_until is required"),
    ],
)
def test_a_required_field_left_unset_is_refused_by_name(clear: object, words: str) -> None:
    wire = request_to_proto(everything())
    clear(wire)  # type: ignore[operator]

    with pytest.raises(InvalidArgumentError, match=words):
        request_from_proto(wire)


def test_money_is_never_a_float_on_the_wire() -> None:
    descriptor = pb.Money.DESCRIPTOR
    assert (
        descriptor.fields_by_name["amount_minor"].type
        == descriptor.fields_by_name["amount_minor"].TYPE_INT64
    )
