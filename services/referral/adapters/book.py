"""The referral state in Postgres: events, tables and the ledger, written through one
connection inside one transaction (see :class:`ReferralBook`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

import asyncpg

from services.kit.db import Connection
from services.kit.eventstore import PostgresEventStore, StreamAppend
from services.kit.timers import schedule_timer
from services.referral.adapters import codec
from services.referral.application.ports import RoomInfo
from services.referral.domain.attribution import Touch, TouchSource
from services.referral.domain.codes import ShareCode, ShareTargetKind
from services.referral.domain.commission import Accrual, OrderStage, ReferredOrder, Review
from services.referral.domain.events import ReferralEvent
from services.referral.domain.ledger import Bucket, OwnerKind, Posting
from services.referral.domain.programme import CommissionShare, PricedLine, Programme
from services.referral.domain.red_packets import RedPacketCampaign
from services.referral.domain.withdrawals import Withdrawal, WithdrawalEvent, WithdrawalState

RELEASE_TIMER = "referral-commission-release"


def release_timer_key(merchant_id: str, order_id: str) -> str:
    return f"{merchant_id}:{order_id}"


def _share(row: asyncpg.Record) -> ShareCode:
    return ShareCode(
        merchant_id=row["merchant_id"],
        code=row["code"],
        sharer_id=row["sharer_id"],
        target_kind=ShareTargetKind(row["target_kind"]),
        target_id=row["target_id"],
        created_at=row["created_at"],
    )


def programme_to_json(programme: Programme) -> str:
    body = asdict(programme)
    body["excluded_promotion_kinds"] = sorted(programme.excluded_promotion_kinds)
    return json.dumps(body)


def programme_from_json(text: str) -> Programme:
    body: dict[str, Any] = json.loads(text)
    body["excluded_promotion_kinds"] = frozenset(body["excluded_promotion_kinds"])
    return Programme(**body)


def _referred(row: asyncpg.Record) -> ReferredOrder:
    return ReferredOrder(
        merchant_id=row["merchant_id"],
        order_id=row["order_id"],
        buyer_id=row["buyer_id"],
        sharer_id=row["sharer_id"],
        code=row["code"],
        room_id=row["room_id"],
        source=TouchSource(row["source"]),
        total_minor=row["total_minor"],
        currency=row["currency"],
        level_two_id=row["level_two_id"],
        flagged=row["flagged"],
        flag_reason=row["flag_reason"],
        lines=tuple(PricedLine(**line) for line in json.loads(row["lines"])),
        stage=OrderStage(row["stage"]),
        accruals=tuple(Accrual(**a) for a in json.loads(row["accruals"])),
        refunded_minor=row["refunded_minor"],
        review=Review(row["review"]),
        release_due=row["release_due"],
        paid_at=row["paid_at"],
        version=row["version"],
    )


def _campaign(row: asyncpg.Record) -> RedPacketCampaign:
    return RedPacketCampaign(
        merchant_id=row["merchant_id"],
        campaign_id=row["campaign_id"],
        amount_minor=row["amount_minor"],
        budget_minor=row["budget_minor"],
        currency=row["currency"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        granted_minor=row["granted_minor"],
        granted_count=row["granted_count"],
    )


def _withdrawal(row: asyncpg.Record) -> Withdrawal:
    return Withdrawal(
        merchant_id=row["merchant_id"],
        withdrawal_id=row["withdrawal_id"],
        user_id=row["user_id"],
        amount_minor=row["amount_minor"],
        currency=row["currency"],
        state=WithdrawalState(row["state"]),
        reviewer_id=row["reviewer_id"],
        provider_payout_id=row["provider_payout_id"],
        version=row["version"],
    )


class PostgresBook:
    def __init__(self, conn: Connection, store: PostgresEventStore) -> None:
        self._conn = conn
        self._store = store

    async def append(
        self,
        stream_id: str,
        merchant_id: str,
        expected_version: int,
        events: Sequence[ReferralEvent],
    ) -> None:
        if not events:
            return
        await self._store.append(
            [
                StreamAppend(
                    stream_id=stream_id,
                    aggregate_type=stream_id.partition(":")[0],
                    merchant_id=merchant_id,
                    expected_version=expected_version,
                    events=[codec.encode(e) for e in events],
                )
            ],
            conn=self._conn,
            savepoint=False,
        )

    async def add_share_code(self, share: ShareCode) -> None:
        await self._conn.execute(
            "INSERT INTO share_codes (merchant_id, code, sharer_id, target_kind, target_id,"
            " created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            share.merchant_id,
            share.code,
            share.sharer_id,
            share.target_kind.value,
            share.target_id,
            share.created_at,
        )

    async def share_code(self, merchant_id: str, code: str) -> ShareCode | None:
        row = await self._conn.fetchrow(
            "SELECT * FROM share_codes WHERE merchant_id = $1 AND code = $2", merchant_id, code
        )
        return _share(row) if row else None

    async def share_code_for(
        self, merchant_id: str, sharer_id: str, kind: ShareTargetKind, target_id: str
    ) -> ShareCode | None:
        row = await self._conn.fetchrow(
            "SELECT * FROM share_codes WHERE merchant_id = $1 AND sharer_id = $2"
            " AND target_kind = $3 AND target_id = $4 ORDER BY created_at DESC LIMIT 1",
            merchant_id,
            sharer_id,
            kind.value,
            target_id,
        )
        return _share(row) if row else None

    async def share_codes_of(self, merchant_id: str, sharer_id: str, limit: int) -> list[ShareCode]:
        rows = await self._conn.fetch(
            "SELECT * FROM share_codes WHERE merchant_id = $1 AND sharer_id = $2"
            " ORDER BY created_at DESC LIMIT $3",
            merchant_id,
            sharer_id,
            limit,
        )
        return [_share(r) for r in rows]

    async def record_room(self, merchant_id: str, room: RoomInfo) -> None:
        await self._conn.execute(
            "INSERT INTO rooms (merchant_id, room_id, title, host_id, starts_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (merchant_id, room_id) DO UPDATE"
            " SET title = $3, host_id = $4, starts_at = $5",
            merchant_id,
            room.room_id,
            room.title,
            room.host_id,
            room.starts_at,
        )

    async def room(self, merchant_id: str, room_id: str) -> RoomInfo | None:
        row = await self._conn.fetchrow(
            "SELECT * FROM rooms WHERE merchant_id = $1 AND room_id = $2", merchant_id, room_id
        )
        if row is None:
            return None
        return RoomInfo(row["room_id"], row["title"], row["host_id"], row["starts_at"])

    async def record_device(self, merchant_id: str, user_id: str, device_id: str) -> None:
        await self._conn.execute(
            "INSERT INTO devices (merchant_id, user_id, device_id) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            merchant_id,
            user_id,
            device_id,
        )

    async def shares_device(self, merchant_id: str, user_a: str, user_b: str) -> bool:
        found: bool = await self._conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM devices a JOIN devices b"
            " ON a.merchant_id = b.merchant_id AND a.device_id = b.device_id"
            " WHERE a.merchant_id = $1 AND a.user_id = $2 AND b.user_id = $3)",
            merchant_id,
            user_a,
            user_b,
        )
        return found

    async def add_touch(self, merchant_id: str, viewer_id: str, touch: Touch) -> None:
        await self._conn.execute(
            "INSERT INTO touches (merchant_id, viewer_id, sharer_id, code, room_id, device_id, at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            merchant_id,
            viewer_id,
            touch.sharer_id,
            touch.code,
            touch.room_id,
            touch.device_id,
            touch.at,
        )

    async def touches(self, merchant_id: str, viewer_id: str, since: datetime) -> list[Touch]:
        rows = await self._conn.fetch(
            "SELECT sharer_id, code, room_id, at, device_id FROM touches"
            " WHERE merchant_id = $1 AND viewer_id = $2 AND at >= $3 ORDER BY at DESC LIMIT 100",
            merchant_id,
            viewer_id,
            since,
        )
        return [
            Touch(r["sharer_id"], r["code"], r["room_id"], r["at"], r["device_id"]) for r in rows
        ]

    async def upline(self, merchant_id: str, user_id: str, depth: int) -> list[str]:
        rows = await self._conn.fetch(
            "WITH RECURSIVE up (user_id, inviter_id, depth) AS ("
            " SELECT invitee_id, inviter_id, 1 FROM invitations"
            " WHERE merchant_id = $1 AND invitee_id = $2"
            " UNION ALL"
            " SELECT i.invitee_id, i.inviter_id, up.depth + 1 FROM invitations i"
            " JOIN up ON i.invitee_id = up.inviter_id AND i.merchant_id = $1"
            " WHERE up.depth < $3)"
            " SELECT inviter_id FROM up ORDER BY depth",
            merchant_id,
            user_id,
            depth,
        )
        return [r["inviter_id"] for r in rows]

    async def bind_invitee(
        self, merchant_id: str, invitee_id: str, inviter_id: str, code: str
    ) -> bool:
        bound = await self._conn.fetchval(
            "INSERT INTO invitations (merchant_id, invitee_id, inviter_id, code)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING true",
            merchant_id,
            invitee_id,
            inviter_id,
            code,
        )
        return bool(bound)

    async def programme(self, merchant_id: str) -> Programme | None:
        body = await self._conn.fetchval(
            "SELECT body FROM programmes WHERE merchant_id = $1", merchant_id
        )
        return programme_from_json(body) if body else None

    async def save_programme(self, programme: Programme) -> None:
        await self._conn.execute(
            "INSERT INTO programmes (merchant_id, body, version) VALUES ($1, $2, $3)"
            " ON CONFLICT (merchant_id) DO UPDATE SET body = $2, version = $3",
            programme.merchant_id,
            programme_to_json(programme),
            programme.version,
        )

    async def referred_order(
        self, merchant_id: str, order_id: str, *, lock: bool = False
    ) -> ReferredOrder | None:
        row = await self._conn.fetchrow(
            "SELECT * FROM referred_orders WHERE merchant_id = $1 AND order_id = $2"  # noqa: S608
            + (" FOR UPDATE" if lock else ""),
            merchant_id,
            order_id,
        )
        return _referred(row) if row else None

    async def save_referred_order(
        self,
        order: ReferredOrder,
        events: Sequence[ReferralEvent],
        placed_at: datetime | None = None,
    ) -> None:
        await self.append(
            ReferredOrder.stream_id(order.merchant_id, order.order_id),
            order.merchant_id,
            order.version,
            events,
        )
        version = order.version + len(events)
        lines = json.dumps([asdict(line) for line in order.lines])
        accruals = json.dumps([asdict(a) for a in order.accruals])
        if order.version == 0:
            await self._conn.execute(
                "INSERT INTO referred_orders (merchant_id, order_id, buyer_id, sharer_id, code,"
                " room_id, source, total_minor, currency, level_two_id, flagged, flag_reason,"
                " lines, stage, version, placed_at) VALUES"
                " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                order.merchant_id,
                order.order_id,
                order.buyer_id,
                order.sharer_id,
                order.code,
                order.room_id,
                order.source.value,
                order.total_minor,
                order.currency,
                order.level_two_id,
                order.flagged,
                order.flag_reason,
                lines,
                order.stage.value,
                version,
                placed_at,
            )
            return
        await self._conn.execute(
            "UPDATE referred_orders SET stage = $3, accruals = $4, refunded_minor = $5,"
            " review = $6, release_due = $7, paid_at = $8, version = $9"
            " WHERE merchant_id = $1 AND order_id = $2",
            order.merchant_id,
            order.order_id,
            order.stage.value,
            accruals,
            order.refunded_minor,
            order.review.value,
            order.release_due,
            order.paid_at,
            version,
        )

    async def accrued_on(
        self, merchant_id: str, user_ids: Sequence[str], day: date
    ) -> dict[str, int]:
        ordered = sorted(set(user_ids))  # one lock order: no deadlock between two accruals
        await self._conn.execute(
            "INSERT INTO commission_days (merchant_id, user_id, day)"
            " SELECT $1, unnest($2::text[]), $3 ON CONFLICT DO NOTHING",
            merchant_id,
            ordered,
            day,
        )
        rows = await self._conn.fetch(
            "SELECT user_id, accrued_minor FROM commission_days WHERE merchant_id = $1"
            " AND user_id = ANY($2::text[]) AND day = $3 ORDER BY user_id FOR UPDATE",
            merchant_id,
            ordered,
            day,
        )
        return {r["user_id"]: r["accrued_minor"] for r in rows}

    async def add_accrued(
        self, merchant_id: str, shares: Sequence[CommissionShare], day: date
    ) -> None:
        for share in shares:
            await self._conn.execute(
                "UPDATE commission_days SET accrued_minor = accrued_minor + $4"
                " WHERE merchant_id = $1 AND user_id = $2 AND day = $3",
                merchant_id,
                share.beneficiary_id,
                day,
                share.amount_minor,
            )

    async def schedule_release(self, merchant_id: str, order_id: str, due_at: datetime) -> None:
        await schedule_timer(
            self._conn,
            kind=RELEASE_TIMER,
            key=release_timer_key(merchant_id, order_id),
            due_at=due_at,
            merchant_id=merchant_id,
            payload={"order_id": order_id},
        )

    async def post(self, merchant_id: str, posting: Posting) -> None:
        entries = posting.entries
        await self._conn.execute(
            "INSERT INTO ledger_entries (merchant_id, transaction_id, kind, currency,"
            " owner_kind, owner_id, bucket, amount_minor, reference)"
            " SELECT $1, $2, $3, $4, k, o, b, a, $5"
            " FROM unnest($6::text[], $7::text[], $8::text[], $9::bigint[]) AS e(k, o, b, a)",
            merchant_id,
            posting.transaction_id,
            posting.kind.value,
            posting.currency,
            posting.reference,
            [e.owner_kind.value for e in entries],
            [e.owner_id for e in entries],
            [e.bucket.value for e in entries],
            [e.amount_minor for e in entries],
        )

    async def balance(self, merchant_id: str, user_id: str, bucket: Bucket) -> int:
        value = await self._conn.fetchval(
            "SELECT coalesce(sum(amount_minor), 0) FROM ledger_entries WHERE merchant_id = $1"
            " AND owner_kind = $2 AND owner_id = $3 AND bucket = $4",
            merchant_id,
            OwnerKind.USER.value,
            user_id,
            bucket.value,
        )
        return int(value)

    async def first_purchase(self, merchant_id: str, buyer_id: str, order_id: str) -> bool:
        first = await self._conn.fetchval(
            "INSERT INTO first_purchases (merchant_id, buyer_id, order_id) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING RETURNING true",
            merchant_id,
            buyer_id,
            order_id,
        )
        return bool(first)

    async def add_campaign(self, campaign: RedPacketCampaign) -> None:
        await self._conn.execute(
            "INSERT INTO red_packet_campaigns (merchant_id, campaign_id, amount_minor,"
            " budget_minor, currency, starts_at, ends_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            campaign.merchant_id,
            campaign.campaign_id,
            campaign.amount_minor,
            campaign.budget_minor,
            campaign.currency,
            campaign.starts_at,
            campaign.ends_at,
        )

    async def campaign(self, merchant_id: str, campaign_id: str) -> RedPacketCampaign | None:
        row = await self._conn.fetchrow(
            "SELECT * FROM red_packet_campaigns WHERE merchant_id = $1 AND campaign_id = $2",
            merchant_id,
            campaign_id,
        )
        return _campaign(row) if row else None

    async def running_campaigns(self, merchant_id: str, at: datetime) -> list[RedPacketCampaign]:
        rows = await self._conn.fetch(
            "SELECT * FROM red_packet_campaigns WHERE merchant_id = $1"
            " AND starts_at <= $2 AND $2 < ends_at ORDER BY starts_at, campaign_id",
            merchant_id,
            at,
        )
        return [_campaign(r) for r in rows]

    async def take_from_budget(
        self, merchant_id: str, campaign_id: str, amount_minor: int
    ) -> int | None:
        granted = await self._conn.fetchval(
            "UPDATE red_packet_campaigns SET granted_minor = granted_minor + $3,"
            " granted_count = granted_count + 1"
            " WHERE merchant_id = $1 AND campaign_id = $2 AND granted_minor + $3 <= budget_minor"
            " RETURNING granted_minor",
            merchant_id,
            campaign_id,
            amount_minor,
        )
        return int(granted) if granted is not None else None

    async def record_grant(
        self,
        merchant_id: str,
        campaign_id: str,
        order_id: str,
        inviter: str,
        invitee: str,
        amount_minor: int,
    ) -> None:
        await self._conn.execute(
            "INSERT INTO red_packet_grants (merchant_id, order_id, campaign_id, inviter_id,"
            " invitee_id, amount_minor) VALUES ($1, $2, $3, $4, $5, $6)",
            merchant_id,
            order_id,
            campaign_id,
            inviter,
            invitee,
            amount_minor,
        )

    async def lock_wallet(self, merchant_id: str, user_id: str) -> None:
        await self._conn.execute(
            "INSERT INTO wallets (merchant_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            merchant_id,
            user_id,
        )
        await self._conn.execute(
            "SELECT 1 FROM wallets WHERE merchant_id = $1 AND user_id = $2 FOR UPDATE",
            merchant_id,
            user_id,
        )

    async def withdrawal(
        self, merchant_id: str, withdrawal_id: str, *, lock: bool = False
    ) -> Withdrawal | None:
        row = await self._conn.fetchrow(
            "SELECT * FROM withdrawals WHERE merchant_id = $1 AND withdrawal_id = $2"  # noqa: S608
            + (" FOR UPDATE" if lock else ""),
            merchant_id,
            withdrawal_id,
        )
        return _withdrawal(row) if row else None

    async def save_withdrawal(
        self, withdrawal: Withdrawal, events: Sequence[WithdrawalEvent]
    ) -> None:
        await self.append(
            Withdrawal.stream_id(withdrawal.merchant_id, withdrawal.withdrawal_id),
            withdrawal.merchant_id,
            withdrawal.version,
            events,
        )
        after = withdrawal
        for event in events:
            after = after.apply(event)
        await self._conn.execute(
            "INSERT INTO withdrawals (merchant_id, withdrawal_id, user_id, amount_minor,"
            " currency, state, reviewer_id, provider_payout_id, version)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT (merchant_id, withdrawal_id) DO UPDATE SET state = $6,"
            " reviewer_id = $7, provider_payout_id = $8, version = $9, updated_at = now()",
            after.merchant_id,
            after.withdrawal_id,
            after.user_id,
            after.amount_minor,
            after.currency,
            after.state.value,
            after.reviewer_id,
            after.provider_payout_id,
            withdrawal.version + len(events),
        )


class PostgresBooks:
    def __init__(self, pool: asyncpg.Pool, store: PostgresEventStore) -> None:
        self._pool = pool
        self._store = store

    def on(self, conn: Connection) -> PostgresBook:
        """A book on a transaction someone else opened (a consumer's, a timer's)."""
        return PostgresBook(conn, self._store)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresBook]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield PostgresBook(conn, self._store)
