"""The referral domain without I/O: share codes, attribution, programmes, the commission's
life, the ledger's postings and withdrawals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.kit.errors import InvalidArgumentError
from services.referral.domain import ledger
from services.referral.domain.attribution import (
    OrderAttributed,
    Touch,
    TouchSource,
    choose_touch,
    is_cycle_order,
    level_two_of,
    would_cycle,
)
from services.referral.domain.codes import (
    CODE_LENGTH,
    ForgedShareCodeError,
    MalformedShareCodeError,
    ShareCode,
    ShareCodeSigner,
    ShareTargetKind,
)
from services.referral.domain.commission import (
    NotUnderReviewError,
    OrderStage,
    ReferredOrder,
)
from services.referral.domain.ledger import Bucket, UnbalancedPostingError
from services.referral.domain.programme import (
    CommissionShare,
    InvalidProgrammeError,
    PricedLine,
    Programme,
)
from services.referral.domain.withdrawals import (
    BelowMinimumWithdrawalError,
    InsufficientBalanceError,
    RequestWithdrawal,
    Withdrawal,
    WithdrawalStateError,
    request_withdrawal,
)

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
SIGNER = ShareCodeSigner(b"a-test-key-of-enough-length")


def test_a_minted_code_verifies_for_its_merchant_only() -> None:
    code = SIGNER.new_code("m1")

    assert len(code) == CODE_LENGTH
    assert SIGNER.verify("m1", code) == code
    with pytest.raises(ForgedShareCodeError):
        SIGNER.verify("m2", code)


def test_codes_are_unguessable_every_mint_is_different() -> None:
    assert len({SIGNER.new_code("m1") for _ in range(1000)}) == 1000


@given(st.integers(min_value=0, max_value=CODE_LENGTH - 1), st.sampled_from("abcdefgh234567"))
def test_changing_any_character_of_a_code_makes_it_a_forgery(position: int, char: str) -> None:
    code = SIGNER.new_code("m1", nonce=bytes(10))
    altered = code[:position] + char + code[position + 1 :]
    if altered == code:
        return
    with pytest.raises(InvalidArgumentError):
        SIGNER.verify("m1", altered)


@pytest.mark.parametrize("code", ["", "short", "A" * CODE_LENGTH, "1" * CODE_LENGTH, "a" * 40])
def test_a_malformed_code_is_refused_as_malformed(code: str) -> None:
    with pytest.raises(MalformedShareCodeError):
        SIGNER.verify("m1", code)


def test_another_key_does_not_verify_a_code() -> None:
    code = SIGNER.new_code("m1")

    assert not ShareCodeSigner(b"another-key-of-enough-length").is_genuine("m1", code)


def test_links_escape_the_target_and_carry_the_code() -> None:
    share = ShareCode("m1", "c0de", "alice", ShareTargetKind.PRODUCT, "sku 1&2", NOW)

    links = share.links("https://h5.example/", "lc")

    assert links.mini_program_path == "pages/product/index?id=sku%201%262&sc=c0de"
    assert links.h5_url == "https://h5.example/s/c0de"
    assert links.app_link == "lc://product/sku%201%262?sc=c0de"


def _touch(sharer: str, minutes_ago: int) -> Touch:
    return Touch(sharer, f"code-{sharer}", "room", NOW - timedelta(minutes=minutes_ago))


def test_the_most_recent_touch_in_the_window_wins() -> None:
    touches = [_touch("ann", 50), _touch("ben", 10), _touch("cat", 30)]

    chosen = choose_touch("buyer", NOW, timedelta(hours=1), None, touches)

    assert chosen == (touches[1], TouchSource.LAST_TOUCH)


def test_touches_outside_the_window_and_the_buyers_own_do_not_count() -> None:
    touches = [_touch("ann", 120), _touch("buyer", 5)]

    assert choose_touch("buyer", NOW, timedelta(hours=1), None, touches) is None


def test_the_orders_own_code_wins_unless_it_is_the_buyers() -> None:
    own, other = _touch("buyer", 0), _touch("cat", 0)
    earlier = [_touch("ann", 5)]

    assert choose_touch("buyer", NOW, timedelta(hours=1), other, earlier) == (
        other,
        TouchSource.ORDER_CODE,
    )
    assert choose_touch("buyer", NOW, timedelta(hours=1), own, earlier) == (
        earlier[0],
        TouchSource.LAST_TOUCH,
    )


def test_cycles_are_recognised_up_the_invitation_chain() -> None:
    assert would_cycle("a", "a", [])
    assert would_cycle("a", "b", ["a"])
    assert would_cycle("a", "c", ["b", "a"])
    assert not would_cycle("d", "b", ["a"])
    assert is_cycle_order("a", "b", ["a"])
    assert is_cycle_order("b", "b", [])
    assert level_two_of("buyer", ["carol"]) == "carol"
    assert level_two_of("carol", ["carol"]) == ""
    assert level_two_of("buyer", []) == ""


PROGRAMME = Programme(
    "m1",
    levels=2,
    default_rate_bps=100,
    sku_rates={"star": 2_000},
    category_rates={"beauty": 500},
    sku_categories={"lip": "beauty", "star": "beauty"},
    level_two_rate_bps=200,
    excluded_promotion_kinds=frozenset({"flash_sale"}),
)


def test_a_sku_rate_wins_over_its_category_which_wins_over_the_default() -> None:
    assert [PROGRAMME.rate_for(s) for s in ("star", "lip", "other")] == [2_000, 500, 100]


def test_commission_floors_each_line_and_skips_excluded_promotions() -> None:
    lines = [
        PricedLine("star", 999),
        PricedLine("lip", 1_999),
        PricedLine("other", 5_000, "flash_sale"),
    ]

    shares, notes = PROGRAMME.commission(lines, "ann", "carol", {})

    assert shares == [CommissionShare("ann", 1, 199 + 99), CommissionShare("carol", 2, 19 + 39)]
    assert notes == []


def test_caps_per_order_and_per_day_cut_each_beneficiary() -> None:
    capped = Programme("m1", default_rate_bps=1_000, per_order_cap_minor=300, per_day_cap_minor=500)

    shares, notes = capped.commission([PricedLine("x", 10_000)], "ann", "", {"ann": 400})

    assert shares == [CommissionShare("ann", 1, 100)]
    assert notes == ["level 1 capped per order", "level 1 capped per day"]


def test_a_one_level_programme_pays_nobody_at_level_two() -> None:
    one = Programme("m1", default_rate_bps=1_000)

    shares, _ = one.commission([PricedLine("x", 1_000)], "ann", "carol", {})

    assert shares == [CommissionShare("ann", 1, 100)]


@pytest.mark.parametrize(
    "change",
    [
        {"levels": 3},
        {"default_rate_bps": 5_001},
        {"level_two_rate_bps": 10},
        {"per_day_cap_minor": -1},
        {"excluded_promotion_kinds": frozenset({"bogus"})},
        {"currency": "yuan"},
        {"attribution_window_seconds": 10},
    ],
)
def test_an_invalid_programme_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(InvalidProgrammeError):
        Programme("m1", **change).validated()  # type: ignore[arg-type]


def _order(total: int = 1_000, *, flagged: bool = False) -> ReferredOrder:
    event = OrderAttributed(
        "o1",
        "bob",
        "ann",
        "code",
        "room",
        TouchSource.LAST_TOUCH,
        total,
        "CNY",
        "carol",
        flagged,
        "shared_device" if flagged else "",
    )
    return ReferredOrder.attributed("m1", event, [PricedLine("x", total)])


def _accrued(order: ReferredOrder, *amounts: int) -> ReferredOrder:
    shares = [CommissionShare(f"u{i}", i + 1, a) for i, a in enumerate(amounts)]
    accrued, event = order.accrue(shares, [], NOW, NOW + timedelta(days=7))
    assert event is not None
    return accrued


@given(
    st.integers(min_value=1, max_value=10**9),
    st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=6),
    st.integers(min_value=1, max_value=10**6),
    st.booleans(),
)
def test_reversals_are_proportional_cumulative_and_never_exceed_what_accrued(
    total: int, refunds: list[int], commission: int, release_midway: bool
) -> None:
    order = _accrued(_order(total), commission)
    reversed_total = 0
    for index, amount in enumerate(refunds):
        if release_midway and index == 1:
            order, _ = order.release()
        order, event = order.refund(f"r{index}", amount, full=False)
        if event is not None:
            reversed_total += sum(s.amount_minor for s in event.commissions)
        refunded = min(total, sum(refunds[: index + 1]))
        expected = commission if refunded >= total else commission * refunded // total
        assert reversed_total == expected
    assert reversed_total <= commission


def test_a_refund_after_release_reverses_from_available() -> None:
    order, _ = _accrued(_order(1_000), 100).release()

    order, event = order.refund("r1", 500, full=False)

    assert event is not None
    assert (event.from_bucket, event.commissions[0].amount_minor) == (Bucket.AVAILABLE, 50)
    assert order.stage is OrderStage.RELEASED


def test_release_gives_what_is_left_and_nothing_once_fully_refunded() -> None:
    partly, _ = _accrued(_order(1_000), 100, 30).refund("r1", 500, full=False)
    whole, _ = _accrued(_order(1_000), 100).refund("r1", 1, full=True)

    released_order, released = partly.release()
    gone_order, nothing = whole.release()

    assert released is not None
    assert [s.amount_minor for s in released.commissions] == [50, 15]
    assert released_order.stage is OrderStage.RELEASED
    assert nothing is None
    assert gone_order.stage is OrderStage.REVERSED


def test_a_flagged_commission_waits_for_review_past_the_window_then_is_released() -> None:
    order = _accrued(_order(flagged=True), 100)

    waiting, nothing = order.release()
    approved, events = waiting.reviewed(True, "boss")

    assert nothing is None
    assert waiting.release_due
    assert [type(e).__name__ for e in events] == ["CommissionReviewed", "CommissionReleased"]
    assert approved.stage is OrderStage.RELEASED
    with pytest.raises(NotUnderReviewError):
        approved.reviewed(False, "boss")


def test_a_rejected_review_reverses_everything_outstanding() -> None:
    order = _accrued(_order(flagged=True), 100)

    rejected, events = order.reviewed(False, "boss")

    assert [type(e).__name__ for e in events] == ["CommissionReviewed", "CommissionReversed"]
    assert rejected.stage is OrderStage.REVERSED
    assert rejected.outstanding == 0


def test_a_payment_without_commission_is_recorded_without_an_event() -> None:
    order, event = _order().accrue([], ["no programme"], NOW, NOW)

    assert event is None
    assert order.stage is OrderStage.NO_COMMISSION


def test_an_unbalanced_or_empty_posting_cannot_be_built() -> None:
    entry = ledger.Entry(ledger.OwnerKind.USER, "ann", Bucket.PENDING, 5)
    with pytest.raises(UnbalancedPostingError):
        ledger.Posting("t1", ledger.PostingKind.ACCRUAL, "CNY", (entry,))
    with pytest.raises(UnbalancedPostingError):
        ledger.Posting("t1", ledger.PostingKind.ACCRUAL, "CNY", ())


@given(st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=5))
def test_every_posting_the_domain_builds_sums_to_zero(amounts: list[int]) -> None:
    shares = [(f"u{i}", a) for i, a in enumerate(amounts)]
    postings = [
        ledger.accrual("a", "m1", "CNY", shares, "o1"),
        ledger.release("r", "CNY", shares, "o1"),
        ledger.reversal("v", "m1", "CNY", shares, Bucket.AVAILABLE, "o1"),
        ledger.red_packet("p", "m1", "CNY", "u0", amounts[0], "c1"),
        *(
            ledger.withdrawal(kind, "w1", "CNY", "u0", amounts[0])
            for kind in (
                ledger.PostingKind.WITHDRAWAL_REQUESTED,
                ledger.PostingKind.WITHDRAWAL_PAID,
                ledger.PostingKind.WITHDRAWAL_REJECTED,
            )
        ),
    ]
    for posting in postings:
        if posting is None:
            assert not any(amounts) or amounts[0] == 0
            continue
        assert sum(e.amount_minor for e in posting.entries) == 0


def test_a_withdrawal_needs_the_minimum_and_the_balance() -> None:
    ask = RequestWithdrawal("m1", "w1", "ann", 500)

    with pytest.raises(BelowMinimumWithdrawalError):
        request_withdrawal(ask, 10_000, 600, "CNY")
    with pytest.raises(InsufficientBalanceError):
        request_withdrawal(ask, 499, 100, "CNY")
    assert request_withdrawal(ask, 500, 100, "CNY").amount_minor == 500


def test_a_withdrawal_is_paid_only_once_approved_and_decided_only_once() -> None:
    withdrawal = Withdrawal.requested(
        "m1", request_withdrawal(RequestWithdrawal("m1", "w1", "ann", 500), 500, 100, "CNY")
    )

    with pytest.raises(WithdrawalStateError):
        withdrawal.pay("sandbox", "p1")
    approved = withdrawal.apply(withdrawal.approve("boss"))
    with pytest.raises(WithdrawalStateError):
        approved.reject("boss", "late")
    assert approved.pay("sandbox", "p1").provider_payout_id == "p1"
