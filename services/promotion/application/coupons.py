"""Coupon use cases: templates, the claim path (a coupon rain), and the coupon's life with
an order (lock, release, redeem, restore).

The claim path, like inventory's reserve path: validate; let Redis decide (many claims, one
pipeline); record the claims Redis granted (many claims, one transaction) and only then
answer. A claim that could not be recorded is given back in Redis before the error is
returned: nobody is told "yours" for a coupon that is not durable. If Redis lost the
template, it is rebuilt from the store under the template's row lock (with a new epoch, so
that a claim decided against the lost state can never be recorded) and the claim retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import Counter

from services.kit.batching import MicroBatcher, record_or_give_back, until_recorded
from services.kit.context import current_context
from services.kit.db import Connection
from services.kit.errors import KitError, UnavailableError
from services.kit.eventstore import retry_on_conflict, utcnow
from services.kit.logging import get_logger
from services.kit.ratelimit import rate_limited
from services.promotion.application.ports import (
    ClaimAttempt,
    ClaimDecision,
    CouponRecords,
    CouponStock,
    PendingClaim,
    StaleEpochError,
)
from services.promotion.domain.coupons import (
    ClaimConflictError,
    ClaimCoupon,
    ClaimLimitReachedError,
    ClaimNotOpenError,
    CouponClaimed,
    CouponEvent,
    CouponNotFoundError,
    CreateCouponTemplate,
    HeldCoupon,
    TemplateDefinition,
)

log = get_logger(__name__)


CLAIMS = Counter("livecommerce_promotion_claims_total", "Coupon claim answers", ["outcome"])
_CLAIMED = CLAIMS.labels("claimed")  # the hot path's: no label lookup per claim


class _Retry(Exception):
    pass


@dataclass(frozen=True)
class ClaimResult:
    claim_id: str
    template_id: str
    claimed: bool
    """False: the drop is sold out."""
    remaining: int = 0


class Coupons:
    def __init__(
        self,
        records: CouponRecords,
        stock: CouponStock,
        *,
        clock: Callable[[], datetime] = utcnow,
        max_batch: int = 256,
    ) -> None:
        self._records = records
        self._stock = stock
        self._clock = clock
        self._rebuilding: dict[tuple[str, str], asyncio.Lock] = {}
        self._deciding: MicroBatcher[ClaimAttempt, ClaimDecision] = MicroBatcher(
            self._decide,
            max_batch=max_batch,
            name="promotion.claim.decide",
        )
        self._recording: MicroBatcher[PendingClaim, None] = MicroBatcher(
            self._record,
            max_batch=max_batch,
            max_in_flight=records.group_commits,
            name="promotion.claim.record",
        )

    # -- templates ---------------------------------------------------------------------

    async def create_template(self, command: CreateCouponTemplate) -> TemplateDefinition:
        """Record the template (idempotent on its id and definition) and load it into
        Redis, so that a drop does not start with a rebuild."""
        template = await retry_on_conflict(
            lambda: self._records.create_template(command.merchant_id, command.event())
        )
        try:
            await self.rebuild(template.merchant_id, template.template_id)
        except UnavailableError as error:
            log.warning("template not loaded into redis yet", error=str(error))
        return template

    async def stop(self, merchant_id: str, template_id: str) -> TemplateDefinition:
        """No more claims (idempotent): the store says so first, then Redis."""
        template = await self._records.stop_template(merchant_id, template_id)
        await self._stock.close(merchant_id, template_id)
        return template

    async def rebuild(self, merchant_id: str, template_id: str, *, force: bool = False) -> bool:
        """Load the template's claims into Redis from the store; False if Redis had it.
        Concurrent callers of one process wait for one rebuild."""
        lock = self._rebuilding.setdefault((merchant_id, template_id), asyncio.Lock())
        async with lock, self._records.locked_template(merchant_id, template_id) as locked:
            if not force and await self._stock.exists(merchant_id, template_id):
                return False
            epoch = locked.bump_epoch()
            claims = await locked.claims()
            await self._stock.load(locked.template, epoch, claims)
            log.info("coupon template rebuilt in redis", template_id=template_id, epoch=epoch)
            return True

    async def sweep(self, grace_seconds: float = 30.0) -> int:
        """Give back claims Redis granted that never became durable (their process died
        between the decision and the group commit): nobody was told "yours", and without
        this the drop would hand out fewer coupons than its quota. Any number of workers
        may sweep at once: a give-back is idempotent. Returns how many were given back."""
        now = self._clock()
        before_ms = int((now - timedelta(seconds=grace_seconds)).timestamp() * 1000)
        given_back = 0
        since = now - timedelta(seconds=grace_seconds)
        for merchant_id, template_id in await self._records.templates_claimable_since(since):
            decided = await self._stock.decided_before(merchant_id, template_id, before_ms)
            if not decided:
                continue
            durable = await self._records.coupons(merchant_id, [c for c, _ in decided])
            for claim_id, epoch in decided:
                if claim_id not in durable:
                    await self._stock.unclaim(merchant_id, template_id, claim_id, epoch)
                    log.warning("unrecorded claim given back", claim_id=claim_id)
                    given_back += 1
        return given_back

    # -- the claim path ------------------------------------------------------------------

    async def claim(self, command: ClaimCoupon, *, address: str | None = None) -> ClaimResult:
        """``address``: the client's, for the per-address claim limit (None: exempt). The
        buyer's and the address's claim limits are counted in the decision itself."""
        command = command.validated()
        attempt = ClaimAttempt(command, address)
        for _ in range(3):
            decision = await self._deciding.submit(attempt)
            outcome = decision.outcome
            if outcome == "OK":
                try:
                    return await self._make_durable(command, decision)
                except _Retry:
                    continue
            if outcome == "NOTEMPLATE":
                await self.rebuild(command.merchant_id, command.template_id)
                continue
            CLAIMS.labels(outcome.lower()).inc()
            if outcome == "SOLD_OUT":
                return ClaimResult(command.claim_id, command.template_id, claimed=False)
            if outcome == "DUP":
                return await self._repeat(command, decision)
            raise _refusal(decision)
        raise UnavailableError("the coupon drop is being rebuilt; retry")

    async def _decide(self, batch: Sequence[ClaimAttempt]) -> list[ClaimDecision]:
        return await self._stock.claim_many(batch, int(self._clock().timestamp() * 1000))

    async def _record(self, batch: Sequence[PendingClaim]) -> list[BaseException | None]:
        """One transaction for the batch's claims; a claim it could not record is given
        back in Redis by the batch, never by its request (a cancelled request's claim is
        recorded all the same: giving it back would overrun the quota)."""

        async def give_back(pending: PendingClaim) -> None:
            event = pending.event
            await self._stock.unclaim(
                pending.merchant_id, event.template_id, event.coupon_id, pending.epoch
            )

        return await record_or_give_back(batch, self._records.record_claims, give_back)

    async def _make_durable(self, command: ClaimCoupon, decision: ClaimDecision) -> ClaimResult:
        event = CouponClaimed(command.claim_id, command.template_id, command.user_id)
        pending = PendingClaim(command.merchant_id, event, decision.epoch, current_context())
        try:
            await self._recording.submit(pending)
        except Exception as error:  # given back in Redis by the batch (see _record)
            if isinstance(error, StaleEpochError):
                raise _Retry from error
            if isinstance(error, KitError):
                raise
            log.error(
                "claim not recorded; given back", claim_id=command.claim_id, error=repr(error)
            )
            raise UnavailableError(
                "the claim could not be recorded; nothing was claimed"
            ) from error
        _CLAIMED.inc()
        return ClaimResult(
            command.claim_id, command.template_id, claimed=True, remaining=decision.remaining
        )

    async def _repeat(self, command: ClaimCoupon, decision: ClaimDecision) -> ClaimResult:
        """The same claim id again: the same answer if it is the same buyer's claim."""
        if decision.existing_owner != command.user_id:
            raise ClaimConflictError(f"claim {command.claim_id} is another buyer's")

        async def recorded() -> HeldCoupon | None:
            found = await self._records.coupons(command.merchant_id, [command.claim_id])
            return found.get(command.claim_id)

        coupon = await until_recorded(recorded)  # a double tap: the first is being recorded
        if coupon is None:
            raise UnavailableError(f"claim {command.claim_id} is being recorded; retry")
        if coupon.template_id != command.template_id or coupon.owner_id != command.user_id:
            raise ClaimConflictError(f"claim {command.claim_id} is another coupon")
        return ClaimResult(command.claim_id, command.template_id, claimed=True)

    # -- a coupon's life with an order ----------------------------------------------------

    async def wallet(
        self, merchant_id: str, owner_id: str, *, limit: int | None = None, offset: int = 0
    ) -> list[HeldCoupon]:
        return await self._records.coupons_of_owner(
            merchant_id, owner_id, limit=limit, offset=offset
        )

    async def held(self, merchant_id: str, coupon_ids: Sequence[str]) -> list[HeldCoupon]:
        """The coupons, in the order given; an unknown one is CouponNotFoundError."""
        found = await self._records.coupons(merchant_id, coupon_ids)
        for coupon_id in coupon_ids:
            if coupon_id not in found:
                raise CouponNotFoundError(f"coupon {coupon_id} not found")
        return [found[coupon_id] for coupon_id in coupon_ids]

    async def lock_for_order(
        self,
        conn: Connection,
        merchant_id: str,
        buyer_id: str,
        order_id: str,
        coupon_ids: Sequence[str],
        until: datetime,
    ) -> tuple[str, ...]:
        """Lock the coupons for the order, all or none, in ``conn``'s transaction. The same
        order again keeps its locks; coupons it locked before and no longer brings are
        released."""
        now = self._clock()
        earlier = await self._records.coupons_of_order(conn, merchant_id, order_id)
        found = await self._records.coupons(merchant_id, coupon_ids, conn=conn)
        changes: list[tuple[HeldCoupon, CouponEvent]] = []
        for coupon in earlier:
            if coupon.coupon_id not in coupon_ids:
                released = coupon.release(order_id, "not_placed")
                if released is not None:
                    changes.append((coupon, released))
        for coupon_id in coupon_ids:
            bringing = found.get(coupon_id)
            if bringing is None:
                raise CouponNotFoundError(f"coupon {coupon_id} not found")
            locked = bringing.lock(buyer_id, order_id, until, now)
            if not (bringing.order_id == order_id and bringing.locked_until == locked.locked_until):
                changes.append((bringing, locked))
        await self._records.record(conn, merchant_id, changes)
        return tuple(coupon_ids)

    async def release_order(
        self, conn: Connection, merchant_id: str, order_id: str, reason: str
    ) -> tuple[str, ...]:
        """Release every coupon the order holds locked (idempotent); their ids."""
        changes: list[tuple[HeldCoupon, CouponEvent]] = []
        for coupon in await self._records.coupons_of_order(conn, merchant_id, order_id):
            released = coupon.release(order_id, reason)
            if released is not None:
                changes.append((coupon, released))
        await self._records.record(conn, merchant_id, changes)
        return tuple(coupon.coupon_id for coupon, _ in changes)

    async def release_for(self, merchant_id: str, order_id: str) -> tuple[str, ...]:
        """ReleaseCoupons: the order was not placed after all."""
        async with self._records.transaction() as conn:
            return await self.release_order(conn, merchant_id, order_id, "not_placed")

    async def redeem(
        self, conn: Connection, merchant_id: str, order_id: str, coupon_ids: Sequence[str]
    ) -> None:
        """The order was paid with these coupons (idempotent)."""
        found = await self._records.coupons(merchant_id, coupon_ids, conn=conn)
        changes: list[tuple[HeldCoupon, CouponEvent]] = []
        for coupon_id in coupon_ids:
            coupon = found.get(coupon_id)
            if coupon is None:
                raise CouponNotFoundError(f"coupon {coupon_id} not found")
            redeemed = coupon.redeem(order_id)
            if redeemed is not None:
                changes.append((coupon, redeemed))
        await self._records.record(conn, merchant_id, changes)

    async def restore(
        self, conn: Connection, merchant_id: str, order_id: str, coupon_ids: Sequence[str]
    ) -> tuple[str, ...]:
        """The order was refunded in full: give back the coupons whose template says so."""
        found = await self._records.coupons(merchant_id, coupon_ids, conn=conn)
        templates = await self._records.templates(
            merchant_id, sorted({c.template_id for c in found.values()})
        )
        changes: list[tuple[HeldCoupon, CouponEvent]] = []
        for coupon in found.values():
            template = templates[coupon.template_id]
            restored = coupon.restore(order_id, template.created.restore_on_refund)
            if restored is not None:
                changes.append((coupon, restored))
        await self._records.record(conn, merchant_id, changes)
        return tuple(coupon.coupon_id for coupon, _ in changes)


def _refusal(decision: ClaimDecision) -> KitError:
    if decision.outcome == "RATE_LIMITED":
        return rate_limited(
            "promotion", "claim", decision.limited_by, decision.retry_after_ms / 1000
        )
    if decision.outcome == "NOT_OPEN":
        opens = datetime.fromtimestamp(decision.opens_at_ms / 1000, UTC)
        return ClaimNotOpenError(f"the coupon drop opens at {opens.isoformat()}")
    if decision.outcome == "CLOSED":
        return ClaimNotOpenError("the coupon drop is over")
    if decision.outcome == "LIMIT":
        return ClaimLimitReachedError(f"a buyer may claim {decision.limit} coupon(s) of this drop")
    return UnavailableError(f"unexpected answer from the coupon store: {decision.outcome}")
