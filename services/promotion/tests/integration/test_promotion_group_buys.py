"""Group buys on the real Postgres: members pay while the deadline fires, from several
connections at once; every group ends completed or failed exactly once, with the events to
show it; joining twice or too late is refused and changes nothing; a completed group stays
completed when a member refunds."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from services.kit.testing import unique
from services.promotion.bootstrap import Promotion
from services.promotion.domain.group_buys import (
    AlreadyMemberError,
    CreateGroupOffer,
    Group,
    GroupClosedError,
    GroupFullError,
    GroupState,
)
from services.promotion.tests.conftest import Clock, PromotionFactory
from services.promotion.tests.helpers import cny, now

MEMBERS = 3


async def _offer(parts: Promotion, merchant: str) -> str:
    offer_id = unique("offer")
    await parts.groups.create_offer(
        CreateGroupOffer(
            merchant_id=merchant,
            offer_id=offer_id,
            sku_id="TEA-01",
            group_price=cny(1990),
            required_members=MEMBERS,
            duration_seconds=600,
            starts_at=now() - timedelta(hours=1),
            ends_at=now() + timedelta(days=1),
        )
    )
    return offer_id


async def _full_group(parts: Promotion, merchant: str, offer_id: str) -> Group:
    group = await parts.groups.open(merchant, offer_id, unique("g"), unique("leader"))
    for _ in range(MEMBERS - 1):
        group = await parts.groups.join(merchant, group.group_id, unique("member"))
    return group


async def _pay(parts: Promotion, merchant: str, group: Group, member: str) -> None:
    async with parts.group_ledger.transaction() as conn:
        await parts.groups.paid(
            conn,
            merchant,
            group.group_id,
            member,
            f"order-{member}",
            group.deadline - timedelta(seconds=1),
        )


async def _expire(parts: Promotion, merchant: str, group: Group) -> None:
    async with parts.group_ledger.transaction() as conn:
        await parts.groups.expire(conn, merchant, group.group_id)


async def _outcomes(parts: Promotion, merchant: str, group_id: str) -> list[str]:
    rows = await parts.pool.fetch(
        "SELECT event_type FROM events WHERE stream_id = $1 ORDER BY version",
        f"group:{merchant}:{group_id}",
    )
    return [
        r["event_type"].rsplit(".", 1)[1]
        for r in rows
        if r["event_type"].endswith(("GroupCompleted", "GroupFailed"))
    ]


async def test_members_paying_while_the_deadline_fires_end_each_group_exactly_once(
    make_promotion: PromotionFactory,
) -> None:
    merchant = unique("m")
    clock = Clock()
    async with make_promotion(clock=clock) as first, make_promotion(clock=clock) as second:
        offer_id = await _offer(first, merchant)
        groups = [await _full_group(first, merchant, offer_id) for _ in range(12)]
        clock.advance(601)  # past every deadline: the timer and the payments race
        work = []
        for index, group in enumerate(groups):
            payers = [m.member_id for m in group.members][: MEMBERS - (index % 2)]
            replicas = [first, second]
            work += [_pay(replicas[i % 2], merchant, group, m) for i, m in enumerate(payers)]
            work += [_expire(first, merchant, group), _expire(second, merchant, group)]
        await asyncio.gather(*work)

        for index, group in enumerate(groups):
            outcomes = await _outcomes(first, merchant, group.group_id)
            assert len(outcomes) == 1, outcomes
            final = await first.group_ledger.group(merchant, group.group_id)
            if index % 2:  # one member short: it can only fail
                assert outcomes == ["GroupFailed"]
                assert final.state is GroupState.FAILED
            else:  # everyone paid in time: whichever came first decided, once
                assert final.state.value == outcomes[0].removeprefix("Group").lower()


async def test_the_last_member_paying_completes_the_group_and_a_refund_leaves_it_completed(
    make_promotion: PromotionFactory,
) -> None:
    merchant = unique("m")
    async with make_promotion() as parts:
        group = await _full_group(parts, merchant, await _offer(parts, merchant))
        for paying in group.members:
            await _pay(parts, merchant, group, paying.member_id)
        await _expire(parts, merchant, group)
        member = group.members[1].member_id
        async with parts.group_ledger.transaction() as conn:
            await parts.groups.left(
                conn, merchant, group.group_id, member, f"order-{member}", "refunded"
            )
        final = await parts.group_ledger.group(merchant, group.group_id)
        assert final.state is GroupState.COMPLETED
        assert final.paid_members == MEMBERS - 1
        assert await _outcomes(parts, merchant, group.group_id) == ["GroupCompleted"]


async def test_joining_twice_too_late_or_a_full_group_is_refused_and_changes_nothing(
    make_promotion: PromotionFactory,
) -> None:
    merchant = unique("m")
    clock = Clock()
    async with make_promotion(clock=clock) as parts:
        offer_id = await _offer(parts, merchant)
        group = await parts.groups.open(merchant, offer_id, unique("g"), "leader")
        await parts.groups.join(merchant, group.group_id, "ann")
        with pytest.raises(AlreadyMemberError):
            await parts.groups.join(merchant, group.group_id, "ann")
        await parts.groups.join(merchant, group.group_id, "bo")
        with pytest.raises(GroupFullError):
            await parts.groups.join(merchant, group.group_id, "cy")
        late = await parts.groups.open(merchant, offer_id, unique("g"), "leader")
        clock.advance(601)
        with pytest.raises(GroupClosedError):
            await parts.groups.join(merchant, late.group_id, "ann")
        assert len((await parts.group_ledger.group(merchant, late.group_id)).members) == 1
        assert len((await parts.group_ledger.group(merchant, group.group_id)).members) == 3
