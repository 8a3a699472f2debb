"""Mapping from referral domain events to their protobuf integration events."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message

from livecommerce.referral.v1 import events_pb2 as pb
from services.kit.eventstore import NewEvent
from services.kit.wire import timestamp
from services.referral.domain import attribution, codes, commission, programme, red_packets
from services.referral.domain import withdrawals as wd
from services.referral.domain.events import ReferralEvent
from services.referral.domain.programme import CommissionShare


def _shares(shares: Sequence[CommissionShare]) -> list[pb.Commission]:
    return [
        pb.Commission(beneficiary_id=s.beneficiary_id, level=s.level, amount_minor=s.amount_minor)
        for s in shares
    ]


def _programme(p: programme.Programme) -> pb.ProgrammeConfigured:
    rates = [pb.CommissionRate(key=f"sku:{k}", rate_bps=v) for k, v in sorted(p.sku_rates.items())]
    rates += [
        pb.CommissionRate(key=f"category:{k}", rate_bps=v)
        for k, v in sorted(p.category_rates.items())
    ]
    return pb.ProgrammeConfigured(
        levels=p.levels,
        default_rate_bps=p.default_rate_bps,
        rates=rates,
        sku_categories=dict(p.sku_categories),
        level_two_rate_bps=p.level_two_rate_bps,
        per_order_cap_minor=p.per_order_cap_minor,
        per_day_cap_minor=p.per_day_cap_minor,
        excluded_promotion_kinds=sorted(p.excluded_promotion_kinds),
        return_window_seconds=p.return_window_seconds,
        attribution_window_seconds=p.attribution_window_seconds,
        min_withdrawal_minor=p.min_withdrawal_minor,
        currency=p.currency,
        version=p.version,
    )


def to_proto(event: ReferralEvent) -> Message:
    match event:
        case codes.ShareCodeCreated():
            return pb.ShareCodeCreated(
                code=event.code,
                sharer_id=event.sharer_id,
                target_kind=event.target_kind.value,
                target_id=event.target_id,
                created_at=timestamp(event.created_at),
            )
        case attribution.ViewAttributed():
            return pb.ViewAttributed(
                viewer_id=event.viewer_id,
                sharer_id=event.sharer_id,
                code=event.code,
                room_id=event.room_id,
                entry=event.entry,
                channel=event.channel,
                joined_at=timestamp(event.joined_at),
            )
        case attribution.InviteeBound():
            return pb.InviteeBound(
                invitee_id=event.invitee_id, inviter_id=event.inviter_id, code=event.code
            )
        case attribution.OrderAttributed():
            return pb.OrderAttributed(
                order_id=event.order_id,
                buyer_id=event.buyer_id,
                sharer_id=event.sharer_id,
                code=event.code,
                room_id=event.room_id,
                source=event.source.value,
                total_minor=event.total_minor,
                currency=event.currency,
                level_two_id=event.level_two_id,
                flagged=event.flagged,
                flag_reason=event.flag_reason,
            )
        case programme.ProgrammeConfigured():
            return _programme(event.programme)
        case commission.CommissionAccrued():
            return pb.CommissionAccrued(
                order_id=event.order_id,
                commissions=_shares(event.commissions),
                currency=event.currency,
                release_at=timestamp(event.release_at),
                held_for_review=event.held_for_review,
                notes=list(event.notes),
            )
        case commission.CommissionReleased():
            return pb.CommissionReleased(
                order_id=event.order_id,
                commissions=_shares(event.commissions),
                currency=event.currency,
            )
        case commission.CommissionReversed():
            return pb.CommissionReversed(
                order_id=event.order_id,
                refund_id=event.refund_id,
                commissions=_shares(event.commissions),
                currency=event.currency,
                from_bucket=event.from_bucket.value,
                refunded_minor=event.refunded_minor,
                order_total_minor=event.order_total_minor,
            )
        case commission.CommissionReviewed():
            return pb.CommissionReviewed(
                order_id=event.order_id, approved=event.approved, reviewer_id=event.reviewer_id
            )
        case red_packets.RedPacketCampaignCreated():
            return pb.RedPacketCampaignCreated(
                campaign_id=event.campaign_id,
                amount_minor=event.amount_minor,
                budget_minor=event.budget_minor,
                currency=event.currency,
                starts_at=timestamp(event.starts_at),
                ends_at=timestamp(event.ends_at),
            )
        case red_packets.RedPacketGranted():
            return pb.RedPacketGranted(
                campaign_id=event.campaign_id,
                inviter_id=event.inviter_id,
                invitee_id=event.invitee_id,
                order_id=event.order_id,
                amount_minor=event.amount_minor,
                currency=event.currency,
                granted_total_minor=event.granted_total_minor,
            )
        case wd.WithdrawalRequested():
            return pb.WithdrawalRequested(
                withdrawal_id=event.withdrawal_id,
                user_id=event.user_id,
                amount_minor=event.amount_minor,
                currency=event.currency,
            )
        case wd.WithdrawalApproved():
            return pb.WithdrawalApproved(
                withdrawal_id=event.withdrawal_id, reviewer_id=event.reviewer_id
            )
        case wd.WithdrawalRejected():
            return pb.WithdrawalRejected(
                withdrawal_id=event.withdrawal_id,
                reviewer_id=event.reviewer_id,
                reason=event.reason,
            )
        case wd.WithdrawalPaid():
            return pb.WithdrawalPaid(
                withdrawal_id=event.withdrawal_id,
                user_id=event.user_id,
                amount_minor=event.amount_minor,
                currency=event.currency,
                provider=event.provider,
                provider_payout_id=event.provider_payout_id,
            )
    raise TypeError(f"not a referral event: {event!r}")


def encode(event: ReferralEvent) -> NewEvent:
    return NewEvent.of(to_proto(event))
