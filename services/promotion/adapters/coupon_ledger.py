"""Coupon templates and coupons in Postgres: events and the rows they imply, in one
transaction. Every writer of a template's claims (the group commit, a rebuild of Redis,
stopping the drop) locks the template's row first; a rebuild bumps the template's
``epoch``, and the group commit refuses claims Redis decided at another epoch."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import cast
from uuid import UUID

import asyncpg

from livecommerce.promotion.v1 import events_pb2 as pb
from services.kit.db import Connection, KeptConnections
from services.kit.eventstore import PostgresEventStore
from services.promotion.adapters import codec, streams
from services.promotion.application.ports import DurableClaim, PendingClaim, StaleEpochError
from services.promotion.domain.coupons import (
    ClaimConflictError,
    CouponEvent,
    CouponState,
    CouponTemplateCreated,
    CouponTemplateStopped,
    HeldCoupon,
    TemplateDefinition,
    TemplateExistsError,
    TemplateNotFoundError,
)

_RECORD_CLAIMS = """
WITH locked AS (
    SELECT merchant_id, template_id, epoch FROM coupon_templates
    WHERE (merchant_id, template_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
    ORDER BY merchant_id, template_id FOR UPDATE
), inserted AS (
    INSERT INTO coupons (merchant_id, coupon_id, template_id, owner_id, state, version)
    SELECT c.m, c.c, c.t, c.o, 'claimed', 1
    FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[])
         WITH ORDINALITY AS c(m, c, t, o, epoch, ord)
    JOIN locked ON locked.merchant_id = c.m AND locked.template_id = c.t
                   AND locked.epoch = c.epoch
    ORDER BY c.ord
    ON CONFLICT (merchant_id, coupon_id) DO NOTHING
    RETURNING merchant_id, coupon_id, template_id
), counted AS (
    UPDATE coupon_templates AS t SET claimed = t.claimed + n.n
    FROM (SELECT merchant_id, template_id, count(*) AS n FROM inserted
          GROUP BY merchant_id, template_id) AS n
    WHERE t.merchant_id = n.merchant_id AND t.template_id = n.template_id
)
SELECT false AS template, merchant_id, coupon_id AS id, NULL::bigint AS epoch FROM inserted
UNION ALL
SELECT true, merchant_id, template_id, epoch FROM locked
"""
"""The group commit's claims in one round trip: lock the templates (in key order), insert
the claims Redis decided at the template's current epoch (inserting is also the check that
a claim id is new), and grow the templates' claimed counts by the rows inserted. Returns
the coupons inserted and the templates' epochs."""

_TEMPLATE_COLUMNS = "merchant_id, template_id, created, stopped, claimed, epoch, version"
_COUPON_COLUMNS = (
    "merchant_id, coupon_id, template_id, owner_id, state, order_id, locked_until, version"
)


def _template_of(row: asyncpg.Record) -> TemplateDefinition:
    created = codec.from_message(pb.CouponTemplateCreated.FromString(row["created"]))
    return TemplateDefinition(
        merchant_id=row["merchant_id"],
        created=cast(CouponTemplateCreated, created),
        stopped=row["stopped"],
        claimed=row["claimed"],
        version=row["version"],
    )


def _coupon_of(row: asyncpg.Record) -> HeldCoupon:
    return HeldCoupon(
        merchant_id=row["merchant_id"],
        coupon_id=row["coupon_id"],
        template_id=row["template_id"],
        owner_id=row["owner_id"],
        state=CouponState(row["state"]),
        order_id=row["order_id"],
        locked_until=row["locked_until"],
        version=row["version"],
    )


class _LockedTemplate:
    def __init__(self, conn: Connection, template: TemplateDefinition, epoch: int) -> None:
        self.conn = conn
        self.template = template
        self.epoch = epoch

    def bump_epoch(self) -> int:
        self.epoch += 1
        return self.epoch

    async def claims(self) -> list[DurableClaim]:
        rows = await self.conn.fetch(
            "SELECT coupon_id, owner_id FROM coupons WHERE merchant_id = $1 AND template_id = $2",
            self.template.merchant_id,
            self.template.template_id,
        )
        return [DurableClaim(r["coupon_id"], r["owner_id"]) for r in rows]


class CouponLedger:
    def __init__(
        self, pool: asyncpg.Pool, store: PostgresEventStore, *, group_commits: int = 1
    ) -> None:
        """``group_commits``: how many claim batches may be recorded at once (each on a
        connection of its own; the templates' row locks order them in the database)."""
        self._pool = pool
        self._store = store
        self._committers = KeptConnections(pool, group_commits)

    @property
    def group_commits(self) -> int:
        return self._committers.count

    async def close(self) -> None:
        await self._committers.close()

    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        return streams.transaction(self._pool)

    # -- templates -------------------------------------------------------------------------

    async def create_template(
        self, merchant_id: str, event: CouponTemplateCreated
    ) -> TemplateDefinition:
        existing = await self.templates(merchant_id, [event.template_id])
        if event.template_id in existing:
            if existing[event.template_id].created != event:
                raise TemplateExistsError(
                    f"coupon template {event.template_id} exists with another definition"
                )
            return existing[event.template_id]
        async with streams.transaction(self._pool) as conn:
            await self._store.append(
                [
                    streams.append(
                        streams.COUPON_TEMPLATE, merchant_id, event.template_id, 0, [event]
                    )
                ],
                conn=conn,
            )
            await conn.execute(
                "INSERT INTO coupon_templates (merchant_id, template_id, created, quota,"
                " per_user_limit, claim_starts_at, claim_ends_at, version)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, 1)",
                merchant_id,
                event.template_id,
                codec.to_message(event).SerializeToString(),
                event.quota,
                event.per_user_limit,
                event.claim_starts_at,
                event.claim_ends_at,
            )
        return TemplateDefinition(merchant_id, event)

    async def template(self, merchant_id: str, template_id: str) -> TemplateDefinition:
        found = await self.templates(merchant_id, [template_id])
        if template_id not in found:
            raise TemplateNotFoundError(f"coupon template {template_id} not found")
        return found[template_id]

    async def templates(
        self, merchant_id: str, template_ids: Sequence[str]
    ) -> dict[str, TemplateDefinition]:
        if not template_ids:
            return {}
        rows = await self._pool.fetch(
            f"SELECT {_TEMPLATE_COLUMNS} FROM coupon_templates"  # noqa: S608
            " WHERE merchant_id = $1 AND template_id = ANY($2::text[])",
            merchant_id,
            list(template_ids),
        )
        return {r["template_id"]: _template_of(r) for r in rows}

    async def list_templates(self, merchant_id: str) -> list[TemplateDefinition]:
        rows = await self._pool.fetch(
            f"SELECT {_TEMPLATE_COLUMNS} FROM coupon_templates"  # noqa: S608
            " WHERE merchant_id = $1 ORDER BY template_id",
            merchant_id,
        )
        return [_template_of(r) for r in rows]

    async def stop_template(self, merchant_id: str, template_id: str) -> TemplateDefinition:
        """Stop the drop (idempotent)."""
        async with self.locked_template(merchant_id, template_id) as locked:
            template = locked.template
            if not template.stopped:
                await self._store.append(
                    [
                        streams.append(
                            streams.COUPON_TEMPLATE,
                            merchant_id,
                            template_id,
                            template.version,
                            [CouponTemplateStopped(template_id)],
                        )
                    ],
                    conn=locked.conn,
                )
                locked.template = replace(template, stopped=True, version=template.version + 1)
            return locked.template

    async def templates_claimable_since(self, since: datetime) -> list[tuple[str, str]]:
        rows = await self._pool.fetch(
            "SELECT merchant_id, template_id FROM coupon_templates WHERE claim_ends_at > $1",
            since,
        )
        return [(r["merchant_id"], r["template_id"]) for r in rows]

    @asynccontextmanager
    async def locked_template(
        self, merchant_id: str, template_id: str
    ) -> AsyncIterator[_LockedTemplate]:
        async with streams.transaction(self._pool) as conn:
            row = await conn.fetchrow(
                f"SELECT {_TEMPLATE_COLUMNS} FROM coupon_templates"  # noqa: S608
                " WHERE merchant_id = $1 AND template_id = $2 FOR UPDATE",
                merchant_id,
                template_id,
            )
            if row is None:
                raise TemplateNotFoundError(f"coupon template {template_id} not found")
            locked = _LockedTemplate(conn, _template_of(row), row["epoch"])
            yield locked
            await conn.execute(
                "UPDATE coupon_templates SET epoch = $3, stopped = $4, version = $5"
                " WHERE merchant_id = $1 AND template_id = $2",
                merchant_id,
                template_id,
                locked.epoch,
                locked.template.stopped,
                locked.template.version,
            )

    # -- claims ----------------------------------------------------------------------------

    async def record_claims(self, pending: Sequence[PendingClaim]) -> list[BaseException | None]:
        # A COMMIT that lost the database raises unless the batch was recorded after all.
        return await self._store.settled_batch(self._committers.use(), pending, self._record_claims)

    async def _record_claims(
        self, conn: Connection, pending: Sequence[PendingClaim], results: list[BaseException | None]
    ) -> list[UUID]:
        """The batch's statements in the caller's transaction: ``results`` gets each refusal;
        returns the events appended."""
        keys = sorted({(p.merchant_id, p.event.template_id) for p in pending})
        rows = await conn.fetch(
            _RECORD_CLAIMS,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [p.merchant_id for p in pending],
            [p.event.coupon_id for p in pending],
            [p.event.template_id for p in pending],
            [p.event.owner_id for p in pending],
            [p.epoch for p in pending],
        )
        epochs = {(r["merchant_id"], r["id"]): r["epoch"] for r in rows if r["template"]}
        inserted = {(r["merchant_id"], r["id"]) for r in rows if not r["template"]}
        accepted: list[PendingClaim] = []
        seen: set[tuple[str, str]] = set()
        for index, item in enumerate(pending):
            key = (item.merchant_id, item.event.template_id)
            claim_key = (item.merchant_id, item.event.coupon_id)
            if key not in epochs:
                results[index] = TemplateNotFoundError(
                    f"coupon template {item.event.template_id} not found"
                )
            elif epochs[key] != item.epoch:
                results[index] = StaleEpochError("the drop was rebuilt; retry")
            elif claim_key in seen or claim_key not in inserted:
                results[index] = ClaimConflictError(f"claim {item.event.coupon_id} is taken")
            else:
                accepted.append(item)
                seen.add(claim_key)
        if not accepted:
            return []
        return await self._store.append_ids(
            [
                streams.append(
                    streams.COUPON,
                    p.merchant_id,
                    p.event.coupon_id,
                    0,
                    [p.event],
                    context=p.context,
                )
                for p in accepted
            ],
            conn=conn,
        )

    # -- coupons ---------------------------------------------------------------------------

    async def coupons(
        self,
        merchant_id: str,
        coupon_ids: Sequence[str],
        *,
        conn: Connection | None = None,
    ) -> dict[str, HeldCoupon]:
        if not coupon_ids:
            return {}
        query = (
            f"SELECT {_COUPON_COLUMNS} FROM coupons"  # noqa: S608
            " WHERE merchant_id = $1 AND coupon_id = ANY($2::text[]) ORDER BY coupon_id"
        )
        if conn is None:
            rows = await self._pool.fetch(query, merchant_id, list(coupon_ids))
        else:
            rows = await conn.fetch(query + " FOR UPDATE", merchant_id, list(coupon_ids))
        return {r["coupon_id"]: _coupon_of(r) for r in rows}

    async def coupons_of_owner(
        self, merchant_id: str, owner_id: str, *, limit: int | None = None, offset: int = 0
    ) -> list[HeldCoupon]:
        rows = await self._pool.fetch(
            f"SELECT {_COUPON_COLUMNS} FROM coupons"  # noqa: S608
            " WHERE merchant_id = $1 AND owner_id = $2 ORDER BY claimed_at, coupon_id"
            " LIMIT $3 OFFSET $4",
            merchant_id,
            owner_id,
            limit,
            offset,
        )
        return [_coupon_of(r) for r in rows]

    async def order_holds_coupons(self, merchant_id: str, order_id: str) -> bool:
        """Whether any coupon is locked or redeemed by the order (read without locking)."""
        return bool(
            await self._pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM coupons WHERE merchant_id = $1 AND order_id = $2)",
                merchant_id,
                order_id,
            )
        )

    async def coupons_of_order(
        self, conn: Connection, merchant_id: str, order_id: str
    ) -> list[HeldCoupon]:
        rows = await conn.fetch(
            f"SELECT {_COUPON_COLUMNS} FROM coupons"  # noqa: S608
            " WHERE merchant_id = $1 AND order_id = $2 ORDER BY coupon_id FOR UPDATE",
            merchant_id,
            order_id,
        )
        return [_coupon_of(r) for r in rows]

    async def record(
        self, conn: Connection, merchant_id: str, changes: Sequence[tuple[HeldCoupon, CouponEvent]]
    ) -> None:
        if not changes:
            return
        await self._store.append(
            [
                streams.append(
                    streams.COUPON, merchant_id, coupon.coupon_id, coupon.version, [event]
                )
                for coupon, event in changes
            ],
            conn=conn,
        )
        after = [coupon.after(event) for coupon, event in changes]
        await conn.execute(
            "UPDATE coupons AS c SET state = u.s, order_id = u.o, locked_until = u.l,"
            " version = u.v FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],"
            " $5::bigint[]) AS u(id, s, o, l, v)"
            " WHERE c.merchant_id = $6 AND c.coupon_id = u.id",
            [c.coupon_id for c in after],
            [c.state.value for c in after],
            [c.order_id for c in after],
            [c.locked_until for c in after],
            [c.version for c in after],
            merchant_id,
        )
