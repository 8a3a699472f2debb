"""Minting and resolving share codes, and the invitation card of a room."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from services.referral.application.ports import (
    Books,
    CardCache,
    CardContent,
    CardRenderer,
    MintLimiter,
    ReferralBook,
)
from services.referral.domain.codes import (
    MintingTooFastError,
    MintShareCode,
    ShareCode,
    ShareCodeCreated,
    ShareCodeNotFoundError,
    ShareCodeSigner,
    ShareTargetKind,
    validate_mint,
)


@dataclass(frozen=True)
class SharingPolicy:
    signer: ShareCodeSigner
    limiter: MintLimiter
    mint_limit_per_minute: int
    h5_base_url: str
    app_scheme: str


async def mint_share_code(
    command: MintShareCode, book: ReferralBook, policy: SharingPolicy, now: datetime
) -> ShareCode:
    validate_mint(command)
    if not await policy.limiter.allow(
        command.merchant_id, command.sharer_id, policy.mint_limit_per_minute
    ):
        raise MintingTooFastError(
            f"at most {policy.mint_limit_per_minute} share codes a minute; try again shortly"
        )
    event = ShareCodeCreated(
        code=policy.signer.new_code(command.merchant_id),
        sharer_id=command.sharer_id,
        target_kind=command.target_kind,
        target_id=command.target_id,
        created_at=now,
    )
    share = ShareCode.created(command.merchant_id, event)
    await book.append(
        ShareCode.stream_id(command.merchant_id, share.code), command.merchant_id, 0, [event]
    )
    await book.add_share_code(share)
    return share


async def resolve_share_code(
    merchant_id: str, code: str, book: ReferralBook, signer: ShareCodeSigner
) -> ShareCode:
    """The code's share; a forged code is refused before any lookup."""
    signer.verify(merchant_id, code)
    share = await book.share_code(merchant_id, code)
    if share is None:
        raise ShareCodeNotFoundError("share code not found")
    return share


@dataclass(frozen=True)
class CardRequest:
    merchant_id: str
    room_id: str
    user_id: str
    display_name: str


class InvitationCards:
    """A user's card for a room: the room's share code of the user (minted on first use),
    rendered once per content and cached."""

    def __init__(
        self, books: Books, cache: CardCache, renderer: CardRenderer, policy: SharingPolicy
    ) -> None:
        self._books = books
        self._cache = cache
        self._renderer = renderer
        self._policy = policy

    async def card(self, request: CardRequest, now: datetime) -> tuple[bytes, str]:
        """The PNG and its fingerprint (an ETag)."""
        async with self._books.transaction() as book:
            share = await book.share_code_for(
                request.merchant_id, request.user_id, ShareTargetKind.ROOM, request.room_id
            )
            room = await book.room(request.merchant_id, request.room_id)
        if share is None:
            async with self._books.transaction() as book:
                share = await mint_share_code(
                    MintShareCode(
                        request.merchant_id, request.user_id, ShareTargetKind.ROOM, request.room_id
                    ),
                    book,
                    self._policy,
                    now,
                )
        content = CardContent(
            sharer_name=request.display_name,
            room_title=room.title if room else request.room_id,
            starts_at=room.starts_at if room else None,
            link=share.links(self._policy.h5_base_url, self._policy.app_scheme).h5_url,
        )
        fingerprint = hashlib.sha256(repr(content).encode()).hexdigest()[:32]
        key = (request.merchant_id, request.room_id, request.user_id)
        found = await self._cache.get(*key, fingerprint)
        if found is not None:
            return found, fingerprint
        png = self._renderer.render(content)
        await self._cache.put(*key, fingerprint, png)
        return png, fingerprint
