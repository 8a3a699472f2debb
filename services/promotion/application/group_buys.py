"""Group-buy use cases: offers, opening and joining groups, and what orders and the
deadline do to a group. Every change to a group happens under its row lock."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from services.kit.db import Connection
from services.kit.eventstore import retry_on_conflict, utcnow
from services.promotion.adapters.streams import TransactionContext
from services.promotion.domain.group_buys import (
    CreateGroupOffer,
    Group,
    GroupEvent,
    GroupNotFoundError,
    GroupOffer,
    GroupOfferCreated,
    GroupOpened,
)


class GroupRecords(Protocol):
    """The durable record of offers and groups (events, rows, the deadline timer)."""

    def transaction(self) -> TransactionContext: ...

    async def create_offer(self, merchant_id: str, event: GroupOfferCreated) -> GroupOffer: ...

    async def offer(self, merchant_id: str, offer_id: str) -> GroupOffer: ...

    async def list_offers(self, merchant_id: str) -> list[GroupOffer]: ...

    async def open_group(self, merchant_id: str, event: GroupOpened) -> Group: ...

    async def group(self, merchant_id: str, group_id: str) -> Group: ...

    async def locked(self, conn: Connection, merchant_id: str, group_id: str) -> Group: ...

    async def record(
        self, conn: Connection, group: Group, events: Sequence[GroupEvent]
    ) -> Group: ...


class GroupBuys:
    def __init__(self, records: GroupRecords, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._records = records
        self._clock = clock

    async def create_offer(self, command: CreateGroupOffer) -> GroupOffer:
        event = command.event()
        return await retry_on_conflict(
            lambda: self._records.create_offer(command.merchant_id, event)
        )

    async def open(self, merchant_id: str, offer_id: str, group_id: str, leader_id: str) -> Group:
        offer = await self._records.offer(merchant_id, offer_id)
        return await self._records.open_group(
            merchant_id, offer.open_group(group_id, leader_id, self._clock())
        )

    async def join(self, merchant_id: str, group_id: str, member_id: str) -> Group:
        async with self._records.transaction() as conn:
            group = await self._records.locked(conn, merchant_id, group_id)
            return await self._records.record(conn, group, [group.join(member_id, self._clock())])

    async def order_placed(
        self, conn: Connection, merchant_id: str, group_id: str, member_id: str, order_id: str
    ) -> None:
        group = await self._group(conn, merchant_id, group_id)
        if group is not None:
            placed = group.order_placed(member_id, order_id)
            await self._records.record(conn, group, [placed] if placed else [])

    async def paid(
        self,
        conn: Connection,
        merchant_id: str,
        group_id: str,
        member_id: str,
        order_id: str,
        paid_at: datetime,
    ) -> Group | None:
        group = await self._group(conn, merchant_id, group_id)
        if group is None:
            return None
        return await self._records.record(conn, group, group.paid(member_id, order_id, paid_at))

    async def left(
        self,
        conn: Connection,
        merchant_id: str,
        group_id: str,
        member_id: str,
        order_id: str,
        reason: str,
    ) -> None:
        group = await self._group(conn, merchant_id, group_id)
        if group is not None:
            left = group.leave(member_id, order_id, reason)
            await self._records.record(conn, group, [left] if left else [])

    async def expire(self, conn: Connection, merchant_id: str, group_id: str) -> Group:
        """The deadline timer: an open group short of its members fails (once)."""
        group = await self._records.locked(conn, merchant_id, group_id)
        failed = group.expire(self._clock())
        return await self._records.record(conn, group, [failed] if failed else [])

    async def _group(self, conn: Connection, merchant_id: str, group_id: str) -> Group | None:
        """The group under its lock; None for an order naming a group promotion never had
        (the order service checked it with PriceOrder: nothing to do)."""
        try:
            return await self._records.locked(conn, merchant_id, group_id)
        except GroupNotFoundError:
            return None
