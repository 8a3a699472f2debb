"""A coupon rain on the real Redis and Postgres: ten times more taps than coupons, buyers
tapping more than once and repeating claim ids; the quota and the per-user limit hold, every
repeat gets its first answer, and Redis and the store agree, also after Redis loses the drop."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from services.kit.errors import OutcomeUnknownError, UnavailableError
from services.kit.testing import CommitCutter, eventually, unique, waiting_for_a_lock
from services.promotion.adapters.redis_coupons import TemplateKeys
from services.promotion.application.coupons import ClaimResult
from services.promotion.application.ports import ClaimAttempt, PendingClaim, StaleEpochError
from services.promotion.bootstrap import Promotion
from services.promotion.domain.coupons import (
    ClaimConflictError,
    ClaimCoupon,
    ClaimLimitReachedError,
    ClaimNotOpenError,
    CouponClaimed,
    TemplateNotFoundError,
)
from services.promotion.settings import PromotionSettings
from services.promotion.tests.conftest import Clock, PromotionFactory
from services.promotion.tests.helpers import fixed_template

QUOTA = 100
LIMIT = 2
TAPS = QUOTA * 10


async def _tap(parts: Promotion, command: ClaimCoupon) -> ClaimResult | Exception:
    """A client's tap: retried while the answer is "being recorded, retry"."""
    for _ in range(20):
        try:
            return await parts.coupons.claim(command)
        except ClaimLimitReachedError as error:
            return error
        except UnavailableError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"claim {command.claim_id} never answered")


async def test_ten_times_oversubscribed_rain_hands_out_exactly_the_quota_within_the_limit(
    make_promotion: PromotionFactory,
) -> None:
    merchant = unique("m")
    async with make_promotion() as first, make_promotion() as second:
        template = await fixed_template(first, merchant, quota=QUOTA, per_user_limit=LIMIT)
        rng = random.Random(7)
        users = [unique("u") for _ in range(TAPS // 3)]
        commands = [
            ClaimCoupon(merchant, template.template_id, rng.choice(users), unique("c"))
            for _ in range(TAPS)
        ]
        repeats = rng.sample(commands, 100)
        replicas = [first, second]
        answers = await asyncio.gather(
            *(_tap(replicas[i % 2], command) for i, command in enumerate([*commands, *repeats]))
        )
        first_answers = dict(zip([c.claim_id for c in commands], answers[:TAPS], strict=True))
        for command, answer in zip(repeats, answers[TAPS:], strict=True):
            again = await _tap(first, command)
            assert type(again) is type(first_answers[command.claim_id]) is type(answer)
            if isinstance(again, ClaimResult):
                assert isinstance(answer, ClaimResult)
                assert again.claimed == answer.claimed

        claimed = [c for c, a in first_answers.items() if isinstance(a, ClaimResult) and a.claimed]
        assert len(claimed) == QUOTA
        rows = await first.pool.fetch(
            "SELECT owner_id, count(*) AS n FROM coupons WHERE merchant_id = $1 GROUP BY owner_id",
            merchant,
        )
        assert sum(r["n"] for r in rows) == QUOTA
        assert max(r["n"] for r in rows) <= LIMIT
        assert (await first.coupon_ledger.template(merchant, template.template_id)).claimed == QUOTA
        events = await first.pool.fetchval(
            "SELECT count(*) FROM events WHERE event_type LIKE '%CouponClaimed'"
            " AND merchant_id = $1",
            merchant,
        )
        assert events == QUOTA
        snapshot = await first.coupons._stock.snapshot(merchant, template.template_id)
        assert snapshot.remaining == 0
        assert set(snapshot.claims) == set(claimed)
        assert Counter(snapshot.claims.values()) == Counter({r["owner_id"]: r["n"] for r in rows})


async def test_a_drop_redis_lost_is_rebuilt_from_the_store_and_never_exceeds_its_quota(
    make_promotion: PromotionFactory,
) -> None:
    merchant = unique("m")
    async with make_promotion() as parts:
        template = await fixed_template(parts, merchant, quota=10, per_user_limit=1)
        early = [
            ClaimCoupon(merchant, template.template_id, unique("u"), unique("c")) for _ in range(6)
        ]
        for command in early:
            assert (await parts.coupons.claim(command)).claimed
        await parts.redis.delete(*TemplateKeys(merchant, template.template_id).all)

        again = await parts.coupons.claim(early[0])
        assert again.claimed
        with pytest.raises(ClaimLimitReachedError):
            await parts.coupons.claim(
                ClaimCoupon(merchant, template.template_id, early[1].user_id, unique("c"))
            )
        late = await asyncio.gather(
            *(
                parts.coupons.claim(
                    ClaimCoupon(merchant, template.template_id, unique("u"), unique("c"))
                )
                for _ in range(20)
            )
        )
        assert sum(1 for r in late if r.claimed) == 4
        assert (await parts.coupon_ledger.template(merchant, template.template_id)).claimed == 10


async def test_a_claim_id_of_another_buyer_is_a_conflict_and_changes_nothing(
    make_promotion: PromotionFactory,
) -> None:
    merchant = unique("m")
    async with make_promotion() as parts:
        template = await fixed_template(parts, merchant, quota=5)
        claim_id = unique("c")
        assert (
            await parts.coupons.claim(
                ClaimCoupon(merchant, template.template_id, "alice", claim_id)
            )
        ).claimed
        with pytest.raises(ClaimConflictError):
            await parts.coupons.claim(ClaimCoupon(merchant, template.template_id, "bob", claim_id))
        assert (await parts.coupon_ledger.template(merchant, template.template_id)).claimed == 1


async def test_a_stopped_drop_and_an_unknown_template_refuse_claims(
    make_promotion: PromotionFactory,
) -> None:
    merchant = unique("m")
    async with make_promotion() as parts:
        template = await fixed_template(parts, merchant, quota=5)
        await parts.coupons.stop(merchant, template.template_id)
        with pytest.raises(ClaimNotOpenError):
            await parts.coupons.claim(
                ClaimCoupon(merchant, template.template_id, "alice", unique("c"))
            )
        with pytest.raises(TemplateNotFoundError):
            await parts.coupons.claim(ClaimCoupon(merchant, unique("tpl"), "alice", unique("c")))


async def test_a_claim_redis_granted_but_never_recorded_is_given_back_by_the_sweeper(
    make_promotion: PromotionFactory,
) -> None:
    merchant = unique("m")
    clock = Clock()
    async with make_promotion(clock=clock) as parts:
        template = await fixed_template(parts, merchant, quota=1)
        lost = ClaimCoupon(merchant, template.template_id, "alice", unique("c"))
        stock = parts.coupons._stock
        decided = await stock.claim_many([ClaimAttempt(lost)], int(clock().timestamp() * 1000))
        assert decided[0].outcome == "OK"
        late = ClaimCoupon(merchant, template.template_id, "bob", unique("c"))
        assert not (await parts.coupons.claim(late)).claimed

        assert await parts.coupons.sweep() == 0
        clock.advance(31)
        assert await parts.coupons.sweep() == 1
        assert await parts.coupons.sweep() == 0
        assert (await parts.coupons.claim(late)).claimed


async def test_a_group_commit_records_claims_of_the_current_epoch_and_refuses_the_rest(
    make_promotion: PromotionFactory,
) -> None:
    merchant = unique("m")
    async with make_promotion() as parts:
        template = await fixed_template(parts, merchant, quota=10)
        tid = template.template_id
        epoch = await parts.pool.fetchval(
            "SELECT epoch FROM coupon_templates WHERE merchant_id = $1 AND template_id = $2",
            merchant,
            tid,
        )

        def pending(claim_id: str, template_id: str, owner: str, at: int) -> PendingClaim:
            return PendingClaim(merchant, CouponClaimed(claim_id, template_id, owner), at)

        taken, twice = unique("c"), unique("c")
        first = await parts.coupon_ledger.record_claims([pending(taken, tid, "alice", epoch)])
        assert first == [None]

        results = await parts.coupon_ledger.record_claims(
            [
                pending(unique("c"), tid, "bob", epoch + 1),  # decided at another epoch
                pending(unique("c"), unique("tpl"), "bob", epoch),  # an unknown template
                pending(taken, tid, "carol", epoch),  # a claim id already recorded
                pending(twice, tid, "dave", epoch),  # recorded
                pending(twice, tid, "erin", epoch),  # the same claim id again in the batch
            ]
        )
        assert [type(r) for r in results] == [
            StaleEpochError,
            TemplateNotFoundError,
            ClaimConflictError,
            type(None),
            ClaimConflictError,
        ]
        assert (await parts.coupon_ledger.template(merchant, tid)).claimed == 2
        held = await parts.coupons.held(merchant, [taken, twice])
        assert [c.owner_id for c in held] == ["alice", "dave"]


async def test_a_claim_cancelled_while_it_is_recorded_stays_claimed_in_redis_and_the_store(
    make_promotion: PromotionFactory,
) -> None:
    """The buyer's request is cancelled (the client left) while its claim waits for the
    group commit: the claim is recorded all the same, so Redis must keep it claimed.
    Giving it back there would let the drop hand out more than its quota."""
    merchant = unique("m")
    async with make_promotion() as parts:
        template = await fixed_template(parts, merchant, quota=1)
        tid = template.template_id
        claims_key = TemplateKeys(merchant, tid).claims
        async with parts.coupon_ledger.locked_template(merchant, tid):
            claiming = asyncio.create_task(
                parts.coupons.claim(ClaimCoupon(merchant, tid, "quitter", "claim-quitter"))
            )

            async def decided() -> bool:
                return bool(await parts.redis.hexists(claims_key, "claim-quitter"))

            await eventually(decided, "the claim decided in Redis", every=0.002)
            # decided is not yet handed over: wait for its group commit behind the lock
            await eventually(
                lambda: waiting_for_a_lock(parts.pool, "coupon_templates"),
                "the claim's group commit waiting for the template's lock",
                every=0.002,
            )
            claiming.cancel()
            [outcome] = await asyncio.gather(claiming, return_exceptions=True)

        async def recorded() -> bool:
            return (await parts.coupon_ledger.template(merchant, tid)).claimed == 1

        await eventually(recorded, "the cancelled buyer's claim recorded")
        latecomer = await parts.coupons.claim(ClaimCoupon(merchant, tid, "latecomer", unique("c")))

        assert isinstance(outcome, asyncio.CancelledError)
        assert not latecomer.claimed
        assert await parts.redis.hexists(claims_key, "claim-quitter")
        assert (await parts.coupon_ledger.template(merchant, tid)).claimed == 1
        [held] = await parts.coupons.held(merchant, ["claim-quitter"])
        assert held.owner_id == "quitter"


@asynccontextmanager
async def drop_behind_a_cutter(
    make_promotion: PromotionFactory, settings: PromotionSettings, quota: int
) -> AsyncIterator[tuple[CommitCutter, Promotion, ClaimMaker]]:
    """A drop of ``quota`` coupons (one per buyer) served by a promotion whose database
    connections go through a :class:`CommitCutter`; a maker of claims on it by buyer."""
    merchant = unique("m")
    async with CommitCutter(settings.postgres_dsn) as cutter:
        proxied = settings.model_copy(update={"postgres_dsn": cutter.dsn})
        async with make_promotion(settings=proxied) as parts:
            template = await fixed_template(parts, merchant, quota=quota, per_user_limit=1)

            def claim(buyer: str) -> ClaimCoupon:
                return ClaimCoupon(merchant, template.template_id, buyer, unique("c"))

            yield cutter, parts, claim


ClaimMaker = Callable[[str], ClaimCoupon]


async def _claimed(parts: Promotion, claim: ClaimCoupon) -> int:
    return (await parts.coupon_ledger.template(claim.merchant_id, claim.template_id)).claimed


async def test_a_claim_whose_commit_the_database_applied_but_never_answered_counts_once(
    make_promotion: PromotionFactory, promotion_settings: PromotionSettings
) -> None:
    async with drop_behind_a_cutter(make_promotion, promotion_settings, 3) as (cutter, parts, c):
        cutter.cut_next_commit(applied=True)
        first = await parts.coupons.claim(c("u1"))
        later = [await _tap(parts, c(f"u{n}")) for n in range(2, 6)]

        assert cutter.cuts == 1
        assert first.claimed
        assert [isinstance(a, ClaimResult) and a.claimed for a in later] == [
            True,
            True,
            False,
            False,
        ]
        assert await _claimed(parts, c("u1")) == 3


async def test_a_claim_whose_commit_cannot_be_found_out_is_not_given_back_on_a_guess(
    make_promotion: PromotionFactory, promotion_settings: PromotionSettings
) -> None:
    async with drop_behind_a_cutter(make_promotion, promotion_settings, 2) as (cutter, parts, c):
        tap = c("u1")
        cutter.cut_next_commit(applied=True, then_down=True)
        with pytest.raises(OutcomeUnknownError):
            await parts.coupons.claim(tap)
        cutter.come_back()
        retried = await _tap(parts, tap)
        others = [await _tap(parts, c(f"u{n}")) for n in range(2, 5)]

        assert isinstance(retried, ClaimResult)
        assert retried.claimed
        assert [isinstance(a, ClaimResult) and a.claimed for a in others] == [True, False, False]
        assert await _claimed(parts, tap) == 2
