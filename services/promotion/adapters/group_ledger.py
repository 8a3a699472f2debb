"""Group-buy offers and groups in Postgres: events, rows and the deadline timer in one
transaction. Every writer of a group (a join, a payment, a cancellation, the deadline)
locks the group's row first, so completion and failure are decided once."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from services.kit.db import Connection
from services.kit.eventstore import EventStore
from services.kit.timers import schedule_timer
from services.promotion.adapters import streams
from services.promotion.domain.group_buys import (
    Group,
    GroupEvent,
    GroupExistsError,
    GroupNotFoundError,
    GroupOffer,
    GroupOfferCreated,
    GroupOfferExistsError,
    GroupOfferNotFoundError,
    GroupOpened,
    GroupState,
    Member,
)

GROUP_DEADLINE_TIMER = "promotion-group-deadline"

_OFFER_COLUMNS = """merchant_id, offer_id, sku_id, group_price_minor, currency, required_members,
    duration_seconds, starts_at, ends_at"""
_GROUP_COLUMNS = """merchant_id, group_id, offer_id, sku_id, leader_id, required_members,
    deadline, state, version, failed_orders"""


def _offer_of(row: asyncpg.Record) -> GroupOffer:
    values = dict(row)
    merchant_id = values.pop("merchant_id")
    return GroupOffer(merchant_id, GroupOfferCreated(**values))


class GroupLedger:
    def __init__(self, pool: asyncpg.Pool, store: EventStore) -> None:
        self._pool = pool
        self._store = store

    def transaction(self) -> streams.TransactionContext:
        return streams.transaction(self._pool)

    # -- offers ----------------------------------------------------------------------------

    async def create_offer(self, merchant_id: str, event: GroupOfferCreated) -> GroupOffer:
        """Idempotent on the offer id and definition."""
        found = await self.find_offer(merchant_id, event.offer_id)
        if found is not None:
            if found.created != event:
                raise GroupOfferExistsError(
                    f"group offer {event.offer_id} exists with another definition"
                )
            return found
        async with streams.transaction(self._pool) as conn:
            await self._store.append(
                [streams.append(streams.GROUP_OFFER, merchant_id, event.offer_id, 0, [event])],
                conn=conn,
            )
            await conn.execute(
                f"INSERT INTO group_offers ({_OFFER_COLUMNS})"  # noqa: S608
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                merchant_id,
                event.offer_id,
                event.sku_id,
                event.group_price_minor,
                event.currency,
                event.required_members,
                event.duration_seconds,
                event.starts_at,
                event.ends_at,
            )
        return GroupOffer(merchant_id, event)

    async def find_offer(self, merchant_id: str, offer_id: str) -> GroupOffer | None:
        row = await self._pool.fetchrow(
            f"SELECT {_OFFER_COLUMNS} FROM group_offers"  # noqa: S608
            " WHERE merchant_id = $1 AND offer_id = $2",
            merchant_id,
            offer_id,
        )
        return None if row is None else _offer_of(row)

    async def offer(self, merchant_id: str, offer_id: str) -> GroupOffer:
        found = await self.find_offer(merchant_id, offer_id)
        if found is None:
            raise GroupOfferNotFoundError(f"group offer {offer_id} not found")
        return found

    async def list_offers(self, merchant_id: str) -> list[GroupOffer]:
        rows = await self._pool.fetch(
            f"SELECT {_OFFER_COLUMNS} FROM group_offers WHERE merchant_id = $1"  # noqa: S608
            " ORDER BY offer_id",
            merchant_id,
        )
        return [_offer_of(r) for r in rows]

    # -- groups ----------------------------------------------------------------------------

    async def open_group(self, merchant_id: str, event: GroupOpened) -> Group:
        """Record a new group and its deadline timer; a group id taken is GroupExistsError."""
        group = Group.opened(merchant_id, event)
        async with streams.transaction(self._pool) as conn:
            inserted = await conn.fetchval(
                "INSERT INTO group_buys (merchant_id, group_id, offer_id, sku_id, leader_id,"
                " required_members, deadline, state, version)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', 1)"
                " ON CONFLICT DO NOTHING RETURNING true",
                merchant_id,
                event.group_id,
                event.offer_id,
                event.sku_id,
                event.leader_id,
                event.required_members,
                event.deadline,
            )
            if not inserted:
                raise GroupExistsError(f"group {event.group_id} exists")
            await self._store.append(
                [streams.append(streams.GROUP, merchant_id, event.group_id, 0, [event])],
                conn=conn,
            )
            await self._save_members(conn, group)
            await schedule_timer(
                conn,
                kind=GROUP_DEADLINE_TIMER,
                key=f"{merchant_id}:{event.group_id}",
                due_at=event.deadline,
                merchant_id=merchant_id,
                payload={"group_id": event.group_id},
            )
        return group

    async def group(self, merchant_id: str, group_id: str) -> Group:
        return await self._load(self._pool, merchant_id, group_id, lock=False)

    async def locked(self, conn: Connection, merchant_id: str, group_id: str) -> Group:
        return await self._load(conn, merchant_id, group_id, lock=True)

    async def _load(
        self, conn: Connection | asyncpg.Pool, merchant_id: str, group_id: str, *, lock: bool
    ) -> Group:
        row = await conn.fetchrow(
            f"SELECT {_GROUP_COLUMNS} FROM group_buys"  # noqa: S608
            " WHERE merchant_id = $1 AND group_id = $2" + (" FOR UPDATE" if lock else ""),
            merchant_id,
            group_id,
        )
        if row is None:
            raise GroupNotFoundError(f"group {group_id} not found")
        members = await conn.fetch(
            "SELECT member_id, order_id, paid, left_group FROM group_members"
            " WHERE merchant_id = $1 AND group_id = $2 ORDER BY position",
            merchant_id,
            group_id,
        )
        return Group(
            merchant_id=merchant_id,
            group_id=group_id,
            offer_id=row["offer_id"],
            sku_id=row["sku_id"],
            leader_id=row["leader_id"],
            required_members=row["required_members"],
            deadline=row["deadline"],
            state=GroupState(row["state"]),
            members=tuple(
                Member(m["member_id"], m["order_id"], m["paid"], m["left_group"]) for m in members
            ),
            version=row["version"],
            failed_orders=tuple(row["failed_orders"]),
        )

    async def record(self, conn: Connection, group: Group, events: Sequence[GroupEvent]) -> Group:
        if not events:
            return group
        await self._store.append(
            [
                streams.append(
                    streams.GROUP, group.merchant_id, group.group_id, group.version, events
                )
            ],
            conn=conn,
        )
        after = group.after(list(events))
        await conn.execute(
            "UPDATE group_buys SET state = $3, version = $4, failed_orders = $5"
            " WHERE merchant_id = $1 AND group_id = $2",
            group.merchant_id,
            group.group_id,
            after.state.value,
            after.version,
            list(after.failed_orders),
        )
        await self._save_members(conn, after)
        return after

    async def _save_members(self, conn: Connection, group: Group) -> None:
        await conn.execute(
            "DELETE FROM group_members WHERE merchant_id = $1 AND group_id = $2",
            group.merchant_id,
            group.group_id,
        )
        await conn.executemany(
            "INSERT INTO group_members (merchant_id, group_id, position, member_id, order_id,"
            " paid, left_group) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [
                (group.merchant_id, group.group_id, i, m.member_id, m.order_id, m.paid, m.left)
                for i, m in enumerate(group.members)
            ],
        )
