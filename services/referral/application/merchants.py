"""What merchants configure: the distribution programme and red-packet campaigns."""

from __future__ import annotations

from dataclasses import replace

from services.kit.errors import AlreadyExistsError
from services.referral.application.ports import Books
from services.referral.domain.programme import Programme, ProgrammeConfigured
from services.referral.domain.red_packets import (
    CreateRedPacketCampaign,
    RedPacketCampaign,
    create_campaign,
)


async def configure_programme(programme: Programme, books: Books) -> Programme:
    """Replace the merchant's programme (the next version); paid orders keep what they
    accrued, orders paid from now on earn by the new one."""
    programme.validated()
    async with books.transaction() as book:
        current = await book.programme(programme.merchant_id)
        version = current.version if current else 0
        configured = replace(programme, version=version + 1)
        await book.append(
            Programme.stream_id(programme.merchant_id),
            programme.merchant_id,
            version,
            [ProgrammeConfigured(configured)],
        )
        await book.save_programme(configured)
        return configured


async def start_campaign(command: CreateRedPacketCampaign, books: Books) -> RedPacketCampaign:
    event = create_campaign(command)
    async with books.transaction() as book:
        if await book.campaign(command.merchant_id, command.campaign_id) is not None:
            raise AlreadyExistsError(f"campaign {command.campaign_id} exists")
        campaign = RedPacketCampaign(
            merchant_id=command.merchant_id,
            campaign_id=event.campaign_id,
            amount_minor=event.amount_minor,
            budget_minor=event.budget_minor,
            currency=event.currency,
            starts_at=event.starts_at,
            ends_at=event.ends_at,
        )
        await book.append(
            RedPacketCampaign.stream_id(command.merchant_id, command.campaign_id),
            command.merchant_id,
            0,
            [event],
        )
        await book.add_campaign(campaign)
        return campaign
