"""Attribution rules, redelivery, the red-packet budget under oversubscription, the ledger's
own guarantees and the leaderboards, against Postgres and Redis through ConsumerRunner."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.referral.application.merchants import start_campaign
from services.referral.domain.ledger import Bucket
from services.referral.domain.red_packets import CreateRedPacketCampaign
from services.referral.tests.conftest import Harness


async def _attributed_to(harness: Harness, order_id: str) -> str | None:
    sharer: str | None = await harness.parts.pool.fetchval(
        "SELECT sharer_id FROM referred_orders WHERE merchant_id = $1 AND order_id = $2",
        harness.merchant,
        order_id,
    )
    return sharer


async def _counts(harness: Harness) -> tuple[int, int, int]:
    row = await harness.parts.pool.fetchrow(
        "SELECT (SELECT count(*) FROM events WHERE merchant_id = $1) AS events,"
        " (SELECT count(*) FROM ledger_entries WHERE merchant_id = $1) AS entries,"
        " (SELECT count(*) FROM touches WHERE merchant_id = $1) AS touches",
        harness.merchant,
    )
    assert row is not None
    return row["events"], row["entries"], row["touches"]


async def test_the_last_touch_inside_the_window_wins_and_the_orders_own_code_wins_over_all(
    harness: Harness,
) -> None:
    ann, ben, cat = [await harness.mint(sharer) for sharer in ("ann", "ben", "cat")]
    await harness.join("buyer", ann.code)
    await harness.join("buyer", ben.code)
    await harness.place("o1", "buyer", [("sku", 100, "")])
    await harness.place("o2", "buyer", [("sku", 100, "")], code=cat.code)

    assert await _attributed_to(harness, "o1") == "ben"
    assert await _attributed_to(harness, "o2") == "cat"


async def test_a_touch_older_than_the_window_does_not_attribute(harness: Harness) -> None:
    await harness.configure(attribution_window_seconds=3600)
    share = await harness.mint("ann")
    await harness.join("buyer", share.code)
    await harness.parts.pool.execute(
        "UPDATE touches SET at = $2 WHERE merchant_id = $1",
        harness.merchant,
        datetime.now(UTC) - timedelta(hours=2),
    )
    await harness.place("o1", "buyer", [("sku", 100, "")])

    assert await _attributed_to(harness, "o1") is None


async def test_self_referral_and_forged_codes_are_ignored(harness: Harness) -> None:
    own = await harness.mint("buyer")
    forged = own.code[:-1] + ("a" if own.code[-1] != "a" else "b")
    await harness.join("buyer", own.code)
    await harness.join("buyer", forged)
    await harness.place("o1", "buyer", [("sku", 100, "")], code=own.code)
    await harness.place("o2", "buyer", [("sku", 100, "")], code=forged)

    touches = await harness.parts.pool.fetchval(
        "SELECT count(*) FROM touches WHERE merchant_id = $1", harness.merchant
    )
    assert touches == 0
    assert await _attributed_to(harness, "o1") is None
    assert await _attributed_to(harness, "o2") is None


async def test_an_order_is_attributed_once_even_when_placed_again_with_another_code(
    harness: Harness,
) -> None:
    ann, ben = await harness.mint("ann"), await harness.mint("ben")
    await harness.place("o1", "buyer", [("sku", 100, "")], code=ann.code)
    await harness.place("o1", "buyer", [("sku", 100, "")], code=ben.code)

    stored = await harness.parts.store.read_stream(f"referral:{harness.merchant}:o1")
    assert await _attributed_to(harness, "o1") == "ann"
    assert len(stored) == 1


async def test_a_redelivered_event_changes_nothing(harness: Harness) -> None:
    await harness.configure(default_rate_bps=1000)
    share = await harness.mint("ann")
    _, joined = await harness.join("buyer", share.code)
    _, placed = await harness.place("o1", "buyer", [("sku", 5_000, "")])
    _, paid = await harness.pay("o1", "buyer", 5_000)
    _, refunded = await harness.refund("o1", "buyer", 1_000)
    before = await _counts(harness), await harness.balances("ann")

    outcomes = [await harness.redeliver(e) for e in (joined, placed, paid, refunded)]
    await harness.pay("o1", "buyer", 5_000)  # the same payment under a new event id

    assert outcomes == ["duplicate"] * 4
    assert (await _counts(harness), await harness.balances("ann")) == before
    assert before[1][Bucket.PENDING] == 400


async def test_the_red_packet_budget_is_never_exceeded_under_tenfold_oversubscription(
    harness: Harness,
) -> None:
    now = datetime.now(UTC)
    await start_campaign(
        CreateRedPacketCampaign(
            harness.merchant,
            "spring",
            888,
            8_880,
            "CNY",
            now - timedelta(hours=1),
            now + timedelta(hours=1),
        ),
        harness.parts.books,
    )
    inviters = [await harness.mint(f"inviter-{i}") for i in range(5)]
    friends = [f"friend-{i}" for i in range(100)]
    for i, friend in enumerate(friends):
        await harness.join(friend, inviters[i % 5].code)
        await harness.place(f"o-{i}", friend, [("sku", 1_000, "")])

    paid = await asyncio.gather(
        *(harness.pay(f"o-{i}", friend, 1_000) for i, friend in enumerate(friends))
    )
    await harness.pay("o-0", "friend-0", 1_000)  # a second payment event for the same order

    campaign = await harness.parts.pool.fetchrow(
        "SELECT granted_minor, granted_count FROM red_packet_campaigns WHERE merchant_id = $1",
        harness.merchant,
    )
    grants = await harness.parts.pool.fetchval(
        "SELECT count(*) FROM red_packet_grants WHERE merchant_id = $1", harness.merchant
    )
    credited = await harness.parts.pool.fetchval(
        "SELECT sum(amount_minor) FROM ledger_entries WHERE merchant_id = $1"
        " AND kind = 'red_packet' AND owner_kind = 'user'",
        harness.merchant,
    )
    assert [outcome for outcome, _ in paid] == ["applied"] * 100
    assert campaign is not None
    assert (campaign["granted_minor"], campaign["granted_count"], grants) == (8_880, 10, 10)
    assert credited == 8_880
    assert await harness.ledger_total() == 0


async def test_only_an_invited_friends_first_purchase_earns_a_red_packet(harness: Harness) -> None:
    now = datetime.now(UTC)
    await start_campaign(
        CreateRedPacketCampaign(
            harness.merchant,
            "c1",
            500,
            50_000,
            "CNY",
            now - timedelta(hours=1),
            now + timedelta(hours=1),
        ),
        harness.parts.books,
    )
    share = await harness.mint("ann")
    await harness.join("friend", share.code)
    for order_id, buyer in (("o1", "friend"), ("o2", "friend"), ("o3", "stranger")):
        await harness.place(order_id, buyer, [("sku", 1_000, "")])
        await harness.pay(order_id, buyer, 1_000)

    assert (await harness.balances("ann"))[Bucket.AVAILABLE] == 500


async def test_the_database_refuses_an_unbalanced_posting_and_any_change_to_the_ledger(
    harness: Harness,
) -> None:
    await harness.configure(default_rate_bps=1000)
    await harness.sold_through_share("o1", "ann", "buyer", [("sku", 1_000, "")])
    insert = (
        "INSERT INTO ledger_entries (merchant_id, transaction_id, kind, currency, owner_kind,"
        " owner_id, bucket, amount_minor) VALUES ($1, 'forged', 'accrual', 'CNY', 'user',"
        " 'ann', 'available', 1000000)"
    )

    async with harness.parts.pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            async with conn.transaction():
                await conn.execute(insert, harness.merchant)
        with pytest.raises(asyncpg.RestrictViolationError):
            await conn.execute("UPDATE ledger_entries SET amount_minor = 1")
        with pytest.raises(asyncpg.RestrictViolationError):
            await conn.execute("DELETE FROM ledger_entries")

    assert await harness.parts.queries.unbalanced_postings() == 0
    assert await harness.ledger_total() == 0
    assert (await harness.balances("ann"))[Bucket.PENDING] == 100


async def test_leaderboards_rank_sharers_by_referred_gmv_net_of_refunds(harness: Harness) -> None:
    ann, ben = await harness.mint("ann"), await harness.mint("ben")
    for order_id, buyer, code, amount in (
        ("o1", "x", ann.code, 3_000),
        ("o2", "y", ben.code, 5_000),
        ("o3", "z", ann.code, 4_000),
    ):
        await harness.place(order_id, buyer, [("sku", amount, "")], code=code)
        await harness.pay(order_id, buyer, amount)
    await harness.refund("o2", "y", 2_000)
    boards = harness.parts.boards
    await boards.add(harness.merchant, "paid:o1", ["room:room-1"], "ann", 3_000)  # a retry

    top = await boards.top(harness.merchant, "room:room-1", 10)

    assert top == [("ann", 7_000), ("ben", 3_000)]
