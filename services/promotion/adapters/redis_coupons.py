"""Coupon quotas in Redis: claim.lua decides, this module routes and parses.

Every key of one template shares the hash tag ``{cp:<merchant>:<template>}``, so a template
lives on one Redis Cluster slot and a script touches one slot only. Keys: ``meta`` (claim
window in ms, per-user limit, closed, epoch), ``stock`` (coupons left), ``users`` (claims
per buyer), ``claims`` (claim id -> ``owner|epoch|claimed_ms``), and the claim rate limits'
``rate:user:<buyer>`` and ``rate:address:<address>`` (times of accepted attempts): the limits
are counted per drop, in the decision's own script, so they cost no round trip of their own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from services.kit.lua import evalsha_many, register_scripts, unavailable_on_redis_errors
from services.kit.ratelimit import RateLimit
from services.promotion.application.ports import (
    ClaimAttempt,
    ClaimDecision,
    ClaimSnapshot,
    DurableClaim,
)
from services.promotion.domain.coupons import TemplateDefinition

_guarded = unavailable_on_redis_errors("the coupon store")


def epoch_ms(moment: Any) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class TemplateKeys:
    merchant_id: str
    template_id: str

    @property
    def tag(self) -> str:
        return f"{{cp:{self.merchant_id}:{self.template_id}}}"

    @property
    def meta(self) -> str:
        return f"{self.tag}:meta"

    @property
    def stock(self) -> str:
        return f"{self.tag}:stock"

    @property
    def users(self) -> str:
        return f"{self.tag}:users"

    @property
    def claims(self) -> str:
        return f"{self.tag}:claims"

    @property
    def all(self) -> list[str]:
        return [self.meta, self.stock, self.users, self.claims]

    def attempts_of_user(self, user_id: str) -> str:
        return f"{self.tag}:rate:user:{user_id}"

    def attempts_of_address(self, address: str | None) -> str:
        return f"{self.tag}:rate:address:{address or '-'}"


def _mapping(values: Mapping[str, Any]) -> dict[Any, Any]:
    return dict(values)


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def _parse(reply: list[Any]) -> ClaimDecision:
    outcome = str(reply[0])
    if outcome == "OK":
        return ClaimDecision(outcome, remaining=_int(reply[1]), epoch=_int(reply[2]))
    if outcome == "DUP":
        owner, epoch, _ = str(reply[1]).rsplit("|", 2)
        return ClaimDecision(outcome, existing_owner=owner, epoch=int(epoch))
    if outcome == "LIMIT":
        return ClaimDecision(outcome, limit=_int(reply[1]))
    if outcome == "NOT_OPEN":
        return ClaimDecision(outcome, opens_at_ms=_int(reply[1]))
    if outcome == "RATE_LIMITED":
        return ClaimDecision(outcome, limited_by=str(reply[1]), retry_after_ms=_int(reply[2]))
    return ClaimDecision(outcome)


class RedisCouponStock:
    def __init__(self, redis: Redis, claim_limit: RateLimit) -> None:
        """``claim_limit``: the claim attempts one buyer and one address may make."""
        self._redis = redis
        self._scripts = register_scripts(redis, "services.promotion.adapters", ["claim", "unclaim"])
        per_user, per_address = claim_limit.windows()
        self._user_window = (per_user.amount, per_user.milliseconds)
        self._address_window = (per_address.amount, per_address.milliseconds)

    def claim_call(self, attempt: ClaimAttempt, now_ms: int) -> tuple[str | int, ...]:
        """claim.lua's keys and arguments for one attempt (6 keys)."""
        claim = attempt.claim
        keys = TemplateKeys(claim.merchant_id, claim.template_id)
        address_window = (0, 0) if attempt.address is None else self._address_window
        return (
            *keys.all,
            keys.attempts_of_user(claim.user_id),
            keys.attempts_of_address(attempt.address),
            claim.claim_id,
            claim.user_id,
            now_ms,
            *self._user_window,
            *address_window,
        )

    @_guarded
    async def claim_many(
        self, attempts: Sequence[ClaimAttempt], now_ms: int
    ) -> list[ClaimDecision]:
        calls = [self.claim_call(attempt, now_ms) for attempt in attempts]
        replies = await evalsha_many(self._redis, self._scripts["claim"], 6, calls)
        return [_parse(reply) for reply in replies]

    @_guarded
    async def unclaim(self, merchant_id: str, template_id: str, claim_id: str, epoch: int) -> None:
        keys = TemplateKeys(merchant_id, template_id)
        await self._scripts["unclaim"](
            keys=[keys.stock, keys.users, keys.claims], args=[claim_id, epoch]
        )

    @_guarded
    async def exists(self, merchant_id: str, template_id: str) -> bool:
        return bool(await self._redis.exists(TemplateKeys(merchant_id, template_id).meta))

    @_guarded
    async def load(
        self, template: TemplateDefinition, epoch: int, claims: Sequence[DurableClaim]
    ) -> None:
        keys = TemplateKeys(template.merchant_id, template.template_id)
        created = template.created
        users = Counter(claim.owner_id for claim in claims)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(*keys.all)
        pipe.hset(
            keys.meta,
            mapping={
                "start": epoch_ms(created.claim_starts_at),
                "end": epoch_ms(created.claim_ends_at),
                "limit": created.per_user_limit,
                "closed": 1 if template.stopped else 0,
                "epoch": epoch,
            },
        )
        pipe.set(keys.stock, created.quota - len(claims))
        if users:
            pipe.hset(keys.users, mapping=_mapping(users))
        if claims:
            pipe.hset(keys.claims, mapping={c.coupon_id: f"{c.owner_id}|{epoch}|0" for c in claims})
        await pipe.execute()

    @_guarded
    async def close(self, merchant_id: str, template_id: str) -> None:
        keys = TemplateKeys(merchant_id, template_id)
        if await self._redis.exists(keys.meta):
            await self._redis.hset(keys.meta, "closed", 1)

    @_guarded
    async def decided_before(
        self, merchant_id: str, template_id: str, before_ms: int
    ) -> list[tuple[str, int]]:
        found = []
        claims = await self._redis.hgetall(TemplateKeys(merchant_id, template_id).claims)
        for claim_id, record in claims.items():
            _, epoch, claimed_ms = str(record).rsplit("|", 2)
            if 0 < int(claimed_ms) < before_ms:
                found.append((str(claim_id), int(epoch)))
        return found

    @_guarded
    async def snapshot(self, merchant_id: str, template_id: str) -> ClaimSnapshot:
        keys = TemplateKeys(merchant_id, template_id)
        meta = await self._redis.hgetall(keys.meta)
        if not meta:
            return ClaimSnapshot(exists=False)
        claims = {
            str(claim_id): str(record).rsplit("|", 2)[0]
            for claim_id, record in (await self._redis.hgetall(keys.claims)).items()
        }
        return ClaimSnapshot(
            exists=True,
            epoch=int(meta["epoch"]),
            remaining=_int(await self._redis.get(keys.stock)),
            users={str(u): int(n) for u, n in (await self._redis.hgetall(keys.users)).items()},
            claims=claims,
        )
