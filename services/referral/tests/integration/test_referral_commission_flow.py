"""Commission end to end against Postgres and Redis: room and order events, as the room and
order services publish them, go through the kernel's ConsumerRunner into attribution,
commission, the ledger and the release timer; the user withdraws over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from livecommerce.referral.v1 import events_pb2 as pb
from services.kit.identity import Role
from services.referral.domain.ledger import Bucket
from services.referral.tests.conftest import Harness

PENDING, AVAILABLE = Bucket.PENDING, Bucket.AVAILABLE


async def _event_types(harness: Harness, stream_id: str) -> list[str]:
    stored = await harness.parts.store.read_stream(stream_id)
    return [e.event_type.rsplit(".", 1)[1] for e in stored]


async def test_share_join_order_pay_release_and_withdraw_moves_money_through_every_bucket(
    harness: Harness, http: httpx.AsyncClient
) -> None:
    await harness.configure(default_rate_bps=1000, min_withdrawal_minor=500)
    await harness.sold_through_share("o1", "alice", "bob", [("sku-1", 10_000, "")])

    assert (await harness.balances("alice"))[PENDING] == 1_000
    assert await harness.pass_return_window("o1") == 1
    after_window = await harness.balances("alice")
    requested = await http.post(
        "/v1/me/withdrawals",
        json={"amount_minor": 800, "withdrawal_id": "w1"},
        headers=harness.token("alice"),
    )
    approved = await http.post(
        "/v1/withdrawals/w1/approve", headers=harness.token("boss", Role.MERCHANT_ADMIN)
    )
    earnings = await http.get("/v1/me/earnings", headers=harness.token("alice"))

    assert (after_window[PENDING], after_window[AVAILABLE]) == (0, 1_000)
    assert requested.status_code == 201, requested.text
    assert approved.json()["state"] == "paid"
    assert approved.json()["provider_payout_id"].startswith("sbx-")
    assert earnings.json() == {
        "user_id": "alice",
        "pending_minor": 0,
        "available_minor": 200,
        "withdrawing_minor": 0,
        "withdrawn_minor": 800,
    }
    assert await _event_types(harness, f"referral:{harness.merchant}:o1") == [
        "OrderAttributed",
        "CommissionAccrued",
        "CommissionReleased",
    ]
    assert await _event_types(harness, f"withdrawal:{harness.merchant}:w1") == [
        "WithdrawalRequested",
        "WithdrawalApproved",
        "WithdrawalPaid",
    ]
    assert await harness.ledger_total() == 0


async def test_commission_stays_pending_until_the_return_window_has_passed(
    harness: Harness,
) -> None:
    await harness.configure(return_window_seconds=7 * 24 * 3600)
    await harness.sold_through_share("o1", "alice", "bob", [("sku-1", 5_000, "")])

    fired = await release_timer_fired_now(harness)

    assert fired == 0
    assert (await harness.balances("alice"))[PENDING] == 500


async def release_timer_fired_now(harness: Harness) -> int:
    from services.referral.entrypoints.worker import release_timer_handler

    return await release_timer_handler(harness.parts).fire_due()


async def test_a_partial_refund_before_release_reverses_pending_commission_in_proportion(
    harness: Harness,
) -> None:
    await harness.configure(default_rate_bps=1000)
    await harness.sold_through_share(
        "o1", "alice", "bob", [("sku-1", 6_000, ""), ("sku-2", 4_000, "")]
    )
    await harness.refund("o1", "bob", 4_000)

    before_release = await harness.balances("alice")
    await harness.pass_return_window("o1")
    after_release = await harness.balances("alice")

    assert before_release[PENDING] == 600
    assert (after_release[PENDING], after_release[AVAILABLE]) == (0, 600)
    reversal = (await harness.parts.store.read_stream(f"referral:{harness.merchant}:o1"))[2]
    message = pb.CommissionReversed.FromString(reversal.payload)
    assert (message.from_bucket, message.commissions[0].amount_minor) == ("pending", 400)
    assert await harness.ledger_total() == 0


async def test_a_full_refund_before_release_leaves_nothing_to_release(harness: Harness) -> None:
    await harness.configure(default_rate_bps=1000)
    await harness.sold_through_share("o1", "alice", "bob", [("sku-1", 3_333, "")])
    await harness.refund("o1", "bob", 3_333, full=True)
    await harness.pass_return_window("o1")

    balances = await harness.balances("alice")

    assert (balances[PENDING], balances[AVAILABLE]) == (0, 0)
    assert await _event_types(harness, f"referral:{harness.merchant}:o1") == [
        "OrderAttributed",
        "CommissionAccrued",
        "CommissionReversed",
    ]


async def test_refunds_after_release_reverse_from_available_and_never_more_than_was_earned(
    harness: Harness,
) -> None:
    await harness.configure(default_rate_bps=1000)
    await harness.sold_through_share("o1", "alice", "bob", [("sku-1", 1_000, "")])
    await harness.pass_return_window("o1")
    await harness.refund("o1", "bob", 333)
    partly = await harness.balances("alice")
    await harness.refund("o1", "bob", 667, full=True)
    await harness.refund("o1", "bob", 100)

    fully = await harness.balances("alice")

    assert partly[AVAILABLE] == 100 - 33
    assert (fully[PENDING], fully[AVAILABLE]) == (0, 0)
    assert await harness.ledger_total() == 0


async def test_a_two_level_programme_pays_the_sharers_inviter_at_the_level_two_rate(
    harness: Harness,
) -> None:
    await harness.configure(levels=2, default_rate_bps=1000, level_two_rate_bps=300)
    carol_code = await harness.mint("carol")
    await harness.join("alice", carol_code.code)  # carol invited alice
    alice_code = await harness.mint("alice")
    await harness.join("bob", alice_code.code)
    await harness.place("o1", "bob", [("sku-1", 10_000, "")])
    await harness.pay("o1", "bob", 10_000)

    alice, carol = await harness.balances("alice"), await harness.balances("carol")

    assert (alice[PENDING], carol[PENDING]) == (1_000, 300)
    assert await harness.ledger_total() == 0


async def test_rates_by_sku_and_category_and_excluded_promotions_and_caps_shape_the_commission(
    harness: Harness,
) -> None:
    await harness.configure(
        default_rate_bps=100,
        sku_rates={"sku-star": 2_000},
        category_rates={"beauty": 500},
        sku_categories={"sku-lip": "beauty"},
        excluded_promotion_kinds=frozenset({"flash_sale"}),
        per_order_cap_minor=2_500,
        per_day_cap_minor=3_000,
    )
    share = await harness.mint("alice")
    await harness.join("bob", share.code)
    lines = [("sku-star", 10_000, ""), ("sku-lip", 4_000, ""), ("sku-x", 9_000, "flash_sale")]
    await harness.place("o1", "bob", lines)
    await harness.pay("o1", "bob", 23_000)
    await harness.place("o2", "bob", [("sku-star", 10_000, "")])
    await harness.pay("o2", "bob", 10_000)

    balances = await harness.balances("alice")

    # o1: 2000 + 200 = 2200 (the flash-sale line earns nothing); o2: 2000, cut to 800 by the day cap
    assert balances[PENDING] == 3_000


async def test_an_order_of_the_sharers_own_inviter_earns_no_commission(harness: Harness) -> None:
    await harness.configure(levels=2, default_rate_bps=1000, level_two_rate_bps=300)
    a_code = await harness.mint("anna")
    await harness.join("ben", a_code.code)  # anna invited ben
    b_code = await harness.mint("ben")
    await harness.join("anna", b_code.code)  # a view back: no cycle is bound
    await harness.place("o1", "anna", [("sku-1", 10_000, "")], code=b_code.code)
    await harness.pay("o1", "anna", 10_000)

    ben, anna = await harness.balances("ben"), await harness.balances("anna")

    assert (ben[PENDING], anna[PENDING]) == (0, 0)
    inviter_of_anna = await harness.parts.pool.fetchval(
        "SELECT inviter_id FROM invitations WHERE merchant_id = $1 AND invitee_id = 'anna'",
        harness.merchant,
    )
    assert inviter_of_anna is None


async def test_a_device_shared_by_sharer_and_buyer_holds_the_commission_for_review(
    harness: Harness, http: httpx.AsyncClient
) -> None:
    await harness.configure(default_rate_bps=1000)
    share = await harness.mint("alice")
    await harness.join("alice", device="phone-1")
    await harness.join("bob", share.code, device="phone-1")
    await harness.place("o1", "bob", [("sku-1", 10_000, "")])
    await harness.pay("o1", "bob", 10_000)
    await harness.pass_return_window("o1")

    held = await harness.balances("alice")
    listed = await http.get("/v1/reviews", headers=harness.token("boss", Role.MERCHANT_ADMIN))
    approved = await http.post(
        "/v1/reviews/o1/approve", headers=harness.token("boss", Role.MERCHANT_ADMIN)
    )
    again = await http.post(
        "/v1/reviews/o1/approve", headers=harness.token("boss", Role.MERCHANT_ADMIN)
    )

    assert (held[PENDING], held[AVAILABLE]) == (1_000, 0)
    assert [r["flag_reason"] for r in listed.json()] == ["shared_device"]
    assert approved.json() == {"order_id": "o1", "stage": "released", "review": "approved"}
    assert again.status_code == 409
    assert (await harness.balances("alice"))[AVAILABLE] == 1_000


async def test_a_rejected_review_reverses_the_commission(
    harness: Harness, http: httpx.AsyncClient
) -> None:
    await harness.configure(default_rate_bps=1000)
    share = await harness.mint("alice")
    await harness.join("alice", device="phone-9")
    await harness.join("bob", share.code, device="phone-9")
    await harness.place("o1", "bob", [("sku-1", 10_000, "")])
    await harness.pay("o1", "bob", 10_000)

    rejected = await http.post(
        "/v1/reviews/o1/reject", headers=harness.token("boss", Role.MERCHANT_ADMIN)
    )
    await harness.pass_return_window("o1")

    assert rejected.json()["stage"] == "reversed"
    assert (await harness.balances("alice"))[PENDING] == 0
    assert await harness.ledger_total() == 0


async def test_an_order_paid_long_ago_is_released_when_its_timer_fires(harness: Harness) -> None:
    await harness.configure(default_rate_bps=1000, return_window_seconds=3600)
    share = await harness.mint("alice")
    await harness.join("bob", share.code)
    await harness.place("o1", "bob", [("sku-1", 2_000, "")])
    await harness.pay("o1", "bob", 2_000, paid_at=datetime.now(UTC) - timedelta(hours=2))

    fired = await release_timer_fired_now(harness)

    assert fired == 1
    assert (await harness.balances("alice"))[AVAILABLE] == 200
