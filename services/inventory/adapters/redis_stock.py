"""Flash-sale stock in Redis: the scripts in lua/ decide, this module routes and parses.

Each sale is split into ``buckets`` (1 by default); every key of one bucket shares the hash
tag ``{fs:<merchant>:<sale>:<bucket>}``, so a bucket lives on one Redis Cluster slot and a
script touches one slot only. A buyer's home bucket (crc32 of the user id) keeps their count
against the per-user limit; when it runs dry, their hold spills to another bucket.
Scripts are registered once and called by SHA (redis-py reloads them on NOSCRIPT).
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from services.inventory.application.ports import (
    Decision,
    DurableHold,
    HoldRecord,
    Released,
    SaleSnapshot,
)
from services.inventory.domain.sale import FlashSale, ReserveStock, epoch_ms
from services.kit.lua import evalsha_many, register_scripts, unavailable_on_redis_errors

RESTOCK_CHANNEL = "inventory:restock"


_unavailable_on_redis_errors = unavailable_on_redis_errors("the stock store")
"""Redis down, timed out or out of connections is a retryable outage for the caller
(UNAVAILABLE / 503), never an unexplained 500."""


def home_bucket(user_id: str, buckets: int) -> int:
    return zlib.crc32(user_id.encode()) % buckets


def bucket_shares(allocated: int, buckets: int) -> list[int]:
    """Split the allocation as evenly as possible; the first buckets take the remainder."""
    base, extra = divmod(allocated, buckets)
    return [base + (1 if b < extra else 0) for b in range(buckets)]


@dataclass(frozen=True)
class BucketKeys:
    """The Redis keys of one bucket of a sale, all under the bucket's hash tag (one slot).
    Each name is built once per instance, and :func:`keys_of` keeps the instances: the
    reserve path names five keys for every hold it decides."""

    merchant_id: str
    sale_id: str
    bucket: int

    @cached_property
    def tag(self) -> str:
        return f"{{fs:{self.merchant_id}:{self.sale_id}:{self.bucket}}}"

    @cached_property
    def meta(self) -> str:
        return f"{self.tag}:meta"

    @cached_property
    def stock(self) -> str:
        return f"{self.tag}:stock"

    @cached_property
    def users(self) -> str:
        return f"{self.tag}:users"

    @cached_property
    def holds(self) -> str:
        return f"{self.tag}:holds"

    @cached_property
    def expiry(self) -> str:
        return f"{self.tag}:expiry"

    @cached_property
    def all(self) -> tuple[str, ...]:
        return (self.meta, self.stock, self.users, self.holds, self.expiry)


@lru_cache(maxsize=4096)
def _bucket_keys(merchant_id: str, sale_id: str, bucket: int) -> BucketKeys:
    return BucketKeys(merchant_id, sale_id, bucket)


def keys_of(sale: FlashSale, bucket: int) -> BucketKeys:
    return _bucket_keys(sale.merchant_id, sale.sale_id, bucket)


def _restock_message(sale: FlashSale) -> str:
    """What a restock announcement carries (release.lua publishes the same): the sale it
    reopens, as ``merchant:sale`` (see ``forget_sold_out_on_restock``)."""
    return f"{sale.merchant_id}:{sale.sale_id}"


def _released(reply: list[Any]) -> Released:
    """release.lua's answer: OK or ALREADY with the units and whether they went back to the
    SKU (the sale had ended), or the refusal alone."""
    outcome = str(reply[0])
    if outcome not in ("OK", "ALREADY"):
        return Released(outcome)
    return Released(outcome, quantity=_int(reply[1]), returned_to_sku=_int(reply[2]) == 1)


def parse_record(raw: str) -> HoldRecord:
    """A hold record as reserve.lua writes it: user|quantity|expiry|state|bucket|home|epoch."""
    user, quantity, expiry, state, bucket, home, epoch = raw.split("|")
    return HoldRecord(user, int(quantity), int(expiry), state, int(bucket), int(home), int(epoch))


def render_record(record: HoldRecord) -> str:
    return "|".join(
        str(v)
        for v in (
            record.user_id,
            record.quantity,
            record.expiry_ms,
            record.state,
            record.bucket,
            record.home_bucket,
            record.epoch,
        )
    )


def _mapping(values: Mapping[str, Any]) -> dict[Any, Any]:
    return dict(values)


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


class RedisFlashStock:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._scripts: dict[str, AsyncScript] = register_scripts(
            redis,
            "services.inventory.adapters",
            ("reserve", "take", "settle", "confirm", "release", "release_quota", "close"),
        )

    @_unavailable_on_redis_errors
    async def reserve_many(
        self, requests: Sequence[tuple[FlashSale, ReserveStock]], now_ms: int
    ) -> list[Decision]:
        """Decide many reservations in one round trip: a pipeline of EVALSHA calls. (Not
        redis-py's Script objects: in a pipeline they cost a SCRIPT EXISTS round trip per
        batch. The script is loaded when Redis answers NOSCRIPT, and those calls resent.)"""
        reserve = self._scripts["reserve"]
        homes = [home_bucket(command.user_id, sale.buckets) for sale, command in requests]
        calls = [
            (
                *keys_of(sale, home).all,
                command.hold_id,
                command.user_id,
                command.quantity,
                now_ms,
                home,
                sale.buckets,
            )
            for (sale, command), home in zip(requests, homes, strict=True)
        ]
        replies = await evalsha_many(self._redis, reserve, 5, calls)
        decisions: list[Decision] = []
        for (sale, command), home, reply in zip(requests, homes, replies, strict=True):
            decision = self._parse_reserve(reply, home)
            if decision.outcome == "SPILL":
                decision = await self._spill(sale, command, decision, now_ms)
            decisions.append(decision)
        return decisions

    @staticmethod
    def _parse_reserve(reply: list[Any], home: int) -> Decision:
        outcome = str(reply[0])
        if outcome in ("OK", "SPILL"):
            return Decision(
                outcome,
                expiry_ms=_int(reply[1]),
                remaining=_int(reply[2]),
                epoch=_int(reply[3]),
                bucket=home,
                home_bucket=home,
            )
        if outcome == "DUP":
            return Decision(outcome, existing=parse_record(str(reply[1])), remaining=_int(reply[2]))
        if outcome == "SOLD_OUT":
            return Decision(outcome, remaining=_int(reply[1]))
        if outcome == "LIMIT":
            return Decision(outcome, limit=_int(reply[2]))
        if outcome == "BAD_QTY":
            return Decision(outcome, limit=_int(reply[1]))
        return Decision(outcome)

    async def _spill(
        self, sale: FlashSale, command: ReserveStock, pending: Decision, now_ms: int
    ) -> Decision:
        home = pending.home_bucket
        home_keys = keys_of(sale, home)
        for offset in range(1, sale.buckets):
            bucket = (home + offset) % sale.buckets
            keys = keys_of(sale, bucket)
            reply = await self._scripts["take"](
                keys=[keys.meta, keys.stock, keys.holds, keys.expiry],
                args=[
                    command.hold_id,
                    command.user_id,
                    command.quantity,
                    pending.expiry_ms,
                    bucket,
                    home,
                    now_ms,
                    pending.epoch,
                ],
            )
            if reply[0] == "OK":
                await self._scripts["settle"](
                    keys=[home_keys.users, home_keys.holds, home_keys.expiry],
                    args=[command.hold_id, bucket],
                )
                return Decision(
                    "OK",
                    expiry_ms=pending.expiry_ms,
                    remaining=_int(reply[1]),
                    epoch=pending.epoch,
                    bucket=bucket,
                    home_bucket=home,
                )
            if reply[0] in ("CLOSED", "NOSALE", "STALE"):
                await self._scripts["settle"](
                    keys=[home_keys.users, home_keys.holds, home_keys.expiry],
                    args=[command.hold_id, -1],
                )
                # A bucket mid-rebuild: let the caller wait for the rebuild and ask again.
                return Decision("NOSALE" if reply[0] == "STALE" else str(reply[0]))
        await self._scripts["settle"](
            keys=[home_keys.users, home_keys.holds, home_keys.expiry], args=[command.hold_id, -1]
        )
        return Decision("SOLD_OUT")

    @_unavailable_on_redis_errors
    async def confirm(self, sale: FlashSale, hold_id: str, bucket: int) -> str:
        keys = keys_of(sale, bucket)
        reply = await self._scripts["confirm"](keys=[keys.holds, keys.expiry], args=[hold_id])
        return str(reply[0])

    @_unavailable_on_redis_errors
    async def release(
        self,
        sale: FlashSale,
        hold_id: str,
        bucket: int,
        home: int,
        now_ms: int,
        *,
        only_if_expired: bool,
        forget: bool = False,
    ) -> Released:
        """Give the hold's units back. ``forget`` is for a hold that never became durable:
        its record is dropped, so that nothing remembers a hold nobody was told about."""
        (released,) = await self.release_many(
            sale, [(hold_id, bucket, home)], now_ms, only_if_expired=only_if_expired, forget=forget
        )
        return released

    @_unavailable_on_redis_errors
    async def release_many(
        self,
        sale: FlashSale,
        holds: Sequence[tuple[str, int, int]],
        now_ms: int,
        *,
        only_if_expired: bool,
        forget: bool = False,
    ) -> list[Released]:
        """Give back the units of many holds of a sale, ``(hold id, bucket, home bucket)``
        each: one round trip, and one more for the holds whose per-user quota is kept in
        another bucket than their units (spilled)."""
        target = _restock_message(sale)
        calls = []
        for hold_id, bucket, home in holds:
            keys = keys_of(sale, bucket)
            calls.append(
                (
                    keys.meta,
                    keys.stock,
                    keys.holds,
                    keys.expiry,
                    keys.users,
                    hold_id,
                    now_ms,
                    int(only_if_expired),
                    int(bucket == home),
                    RESTOCK_CHANNEL,
                    target,
                    int(forget),
                )
            )
        replies = await evalsha_many(self._redis, self._scripts["release"], 5, calls)
        released = [_released(reply) for reply in replies]
        spilled = [
            (keys_of(sale, home), hold_id)
            for (hold_id, bucket, home), outcome in zip(holds, released, strict=True)
            if outcome.outcome == "OK" and bucket != home
        ]
        if spilled:
            await evalsha_many(
                self._redis,
                self._scripts["release_quota"],
                2,
                [(keys.users, keys.holds, hold_id, int(forget)) for keys, hold_id in spilled],
            )
        return released

    @_unavailable_on_redis_errors
    async def close(self, sale: FlashSale) -> int:
        """Close every bucket; the units that were still available (idempotent)."""
        left = 0
        for bucket in range(sale.buckets):
            keys = keys_of(sale, bucket)
            left += _int(await self._scripts["close"](keys=[keys.meta, keys.stock]))
        return left

    @_unavailable_on_redis_errors
    async def expiring(
        self, sales: Sequence[FlashSale], now_ms: int, limit: int
    ) -> list[list[list[str]] | None]:
        if not sales:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for sale in sales:
            for bucket in range(sale.buckets):
                keys = keys_of(sale, bucket)
                pipe.exists(keys.meta)
                pipe.zrangebyscore(keys.expiry, "-inf", now_ms, start=0, num=limit)
        replies = iter(await pipe.execute())
        found: list[list[list[str]] | None] = []
        for sale in sales:
            present, expired = True, []
            for _ in range(sale.buckets):
                present = bool(next(replies)) and present
                expired.append([str(hold_id) for hold_id in next(replies)])
            found.append(expired if present else None)
        return found

    @_unavailable_on_redis_errors
    async def forget_pending(self, sale: FlashSale, bucket: int, hold_id: str) -> None:
        """Drop a spill that never settled (its process died mid-way): quota back."""
        keys = keys_of(sale, bucket)
        await self._scripts["settle"](
            keys=[keys.users, keys.holds, keys.expiry], args=[hold_id, -1]
        )

    @_unavailable_on_redis_errors
    async def announce_restock(self, sale: FlashSale) -> None:
        await self._redis.publish(RESTOCK_CHANNEL, _restock_message(sale))

    @_unavailable_on_redis_errors
    async def records(
        self, sale: FlashSale, bucket: int, hold_ids: Sequence[str]
    ) -> list[HoldRecord | None]:
        if not hold_ids:
            return []
        raws = await self._redis.hmget(keys_of(sale, bucket).holds, list(hold_ids))
        return [parse_record(str(raw)) if raw else None for raw in raws]

    @_unavailable_on_redis_errors
    async def exists(self, sale: FlashSale) -> bool:
        for bucket in range(sale.buckets):
            if not await self._redis.exists(keys_of(sale, bucket).meta):
                return False
        return True

    @_unavailable_on_redis_errors
    async def load(
        self, sale: FlashSale, epoch: int, holds: Sequence[DurableHold], closed: bool
    ) -> None:
        """Write the sale's state, bucket by bucket, from what the event store holds."""
        shares = bucket_shares(sale.allocated, sale.buckets)
        for bucket in range(sale.buckets):
            keys = keys_of(sale, bucket)
            in_bucket = [h for h in holds if h.bucket == bucket]
            taken = sum(
                h.quantity for h in in_bucket if h.state in ("held", "confirmed", "returned")
            )
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(*keys.all)
            pipe.hset(
                keys.meta,
                mapping={
                    "start": epoch_ms(sale.starts_at),
                    "end": epoch_ms(sale.ends_at),
                    "limit": sale.per_user_limit,
                    "ttl": sale.hold_ttl_seconds * 1000,
                    "closed": 1 if closed else 0,
                    "closed_left": 0,
                    "epoch": epoch,
                    "buckets": sale.buckets,
                },
            )
            pipe.set(keys.stock, 0 if closed else shares[bucket] - taken)
            users: Counter[str] = Counter()
            for hold in holds:
                if hold.home_bucket == bucket and hold.state in ("held", "confirmed"):
                    users[hold.user_id] += hold.quantity
            if users:
                pipe.hset(keys.users, mapping=_mapping(users))
            records: dict[str, str] = {}
            for hold in holds:
                if hold.state not in ("held", "confirmed"):
                    continue
                if hold.bucket != bucket and hold.home_bucket != bucket:
                    continue
                records[hold.hold_id] = render_record(
                    HoldRecord(
                        hold.user_id,
                        hold.quantity,
                        epoch_ms(hold.expires_at),
                        "H" if hold.state == "held" else "S",
                        hold.bucket,
                        hold.home_bucket,
                        epoch,
                    )
                )
            if records:
                pipe.hset(keys.holds, mapping=_mapping(records))
            expiring = {h.hold_id: epoch_ms(h.expires_at) for h in in_bucket if h.state == "held"}
            if expiring:
                pipe.zadd(keys.expiry, expiring)
            await pipe.execute()

    @_unavailable_on_redis_errors
    async def forget(self, sale: FlashSale) -> None:
        for bucket in range(sale.buckets):
            await self._redis.delete(*keys_of(sale, bucket).all)

    @_unavailable_on_redis_errors
    async def snapshot(self, sale: FlashSale) -> SaleSnapshot:
        snapshot = SaleSnapshot(exists=True)
        for bucket in range(sale.buckets):
            keys = keys_of(sale, bucket)
            # One bucket read at one instant (MULTI): its stock and its holds agree even
            # while reservations go on (its keys share one slot).
            pipe = self._redis.pipeline(transaction=True)
            pipe.hgetall(keys.meta)
            pipe.get(keys.stock)
            pipe.hgetall(keys.users)
            pipe.hgetall(keys.holds)
            meta, stock, users, holds = await pipe.execute()
            if not meta:
                return SaleSnapshot(exists=False)
            snapshot.epoch = int(meta["epoch"])
            snapshot.closed = snapshot.closed or meta.get("closed") == "1"
            snapshot.available += _int(stock)
            for user, count in users.items():
                snapshot.users[str(user)] += int(count)
            for hold_id, raw in holds.items():
                record = parse_record(str(raw))
                if record.bucket != bucket:
                    # a home bucket's pointer to units held elsewhere, or a spill unsettled
                    snapshot.holds.setdefault(str(hold_id), record)
                    continue
                snapshot.holds[str(hold_id)] = record
                if record.state == "H":
                    snapshot.held += record.quantity
                elif record.state == "S":
                    snapshot.sold += record.quantity
        snapshot.users = +snapshot.users
        return snapshot
