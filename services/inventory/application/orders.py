"""What inventory does when an order ends without keeping its units: the order service
cancelled it (the buyer, the payment timeout, a failed group buy, the merchant) or refunded
it before shipping. Every hold of the order is released; releases are idempotent, so a
redelivered event changes nothing.

A hold the order names but inventory does not know (a line sold without a flash sale, an
id from another merchant, an id that is not even well formed) is logged and skipped: one
bad id must not keep the order's other holds, or the events after it, from being handled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.inventory.application.ports import HoldReleaser
from services.inventory.domain.sale import ReleaseReason
from services.kit.errors import InvalidArgumentError, NotFoundError
from services.kit.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class ReleaseOrderHolds:
    merchant_id: str
    order_id: str
    hold_ids: Sequence[str]
    reason: ReleaseReason


@dataclass(frozen=True)
class OrderHoldsReleased:
    released: tuple[str, ...]
    """Released now or before (a redelivery)."""
    skipped: tuple[str, ...]
    """Unknown to inventory or malformed: nothing to give back."""


async def release_order_holds(
    command: ReleaseOrderHolds, holds: HoldReleaser
) -> OrderHoldsReleased:
    released: list[str] = []
    skipped: list[str] = []
    for hold_id in dict.fromkeys(h for h in command.hold_ids if h):
        try:
            await holds.release(command.merchant_id, hold_id, command.reason)
        except (NotFoundError, InvalidArgumentError) as error:
            log.warning(
                "order names a hold inventory does not have; skipped",
                merchant_id=command.merchant_id,
                order_id=command.order_id,
                hold_id=hold_id,
                error=error.detail,
            )
            skipped.append(hold_id)
        else:
            released.append(hold_id)
    return OrderHoldsReleased(tuple(released), tuple(skipped))
