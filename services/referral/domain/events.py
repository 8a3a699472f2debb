"""Every event the referral service records, as one type."""

from __future__ import annotations

from services.referral.domain import attribution, codes, commission, programme, red_packets
from services.referral.domain import withdrawals as wd

ReferralEvent = (
    codes.ShareCodeCreated
    | attribution.ViewAttributed
    | attribution.InviteeBound
    | attribution.OrderAttributed
    | programme.ProgrammeConfigured
    | commission.CommissionAccrued
    | commission.CommissionReleased
    | commission.CommissionReversed
    | commission.CommissionReviewed
    | red_packets.RedPacketCampaignCreated
    | red_packets.RedPacketGranted
    | wd.WithdrawalEvent
)
