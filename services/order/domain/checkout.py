"""The place-order command: what a buyer asks for, validated, and its fingerprint."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from services.kit.errors import InvalidArgumentError
from services.kit.tenancy import validate_id, validate_merchant_id
from services.order.domain.order import MAX_LINES, MAX_QUANTITY, Channel

IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
MAX_COUPONS = 5


class InvalidIdempotencyKeyError(InvalidArgumentError):
    """Missing, too short, too long or with characters other than letters, digits, . _ : -"""


class IdempotencyKeyReusedError(InvalidArgumentError):
    """The key was used for another checkout (another body): keys are one per checkout."""


def validate_idempotency_key(key: str | None) -> str:
    if key is None or not IDEMPOTENCY_KEY_PATTERN.match(key):
        raise InvalidIdempotencyKeyError(
            "an Idempotency-Key header of 8 to 128 letters, digits, '.', '_', ':' or '-' is"
            " required (one fresh key per checkout, reused only to retry it)"
        )
    return key


@dataclass(frozen=True)
class PlaceOrder:
    merchant_id: str
    buyer_id: str
    room_id: str
    channel: Channel
    lines: tuple[tuple[str, int], ...]
    coupon_ids: tuple[str, ...] = ()
    group_id: str = ""
    share_code: str = ""

    def __post_init__(self) -> None:
        validate_merchant_id(self.merchant_id)
        validate_id(self.buyer_id, "buyer id")
        validate_id(self.room_id, "room id")
        if not 1 <= len(self.lines) <= MAX_LINES:
            raise InvalidArgumentError(f"an order has 1 to {MAX_LINES} lines")
        skus = [sku for sku, _ in self.lines]
        if len(set(skus)) != len(skus):
            raise InvalidArgumentError("each SKU may appear on one line only")
        for sku, quantity in self.lines:
            validate_id(sku, "SKU id")
            if not 1 <= quantity <= MAX_QUANTITY:
                raise InvalidArgumentError(
                    f"quantity of SKU {sku} must be 1 to {MAX_QUANTITY}, not {quantity}"
                )
        if len(self.coupon_ids) > MAX_COUPONS:
            raise InvalidArgumentError(f"at most {MAX_COUPONS} coupons per order")
        if len(set(self.coupon_ids)) != len(self.coupon_ids):
            raise InvalidArgumentError("a coupon may be applied once")
        for coupon_id in self.coupon_ids:
            validate_id(coupon_id, "coupon id")
        if self.group_id:
            validate_id(self.group_id, "group id")
        if self.share_code:
            validate_id(self.share_code, "share code")

    def fingerprint(self) -> str:
        """Equal for equal requests, whatever their JSON spelling."""
        canonical = json.dumps(
            {
                "merchant": self.merchant_id,
                "buyer": self.buyer_id,
                "room": self.room_id,
                "channel": self.channel.value,
                "lines": sorted(self.lines),
                "coupons": list(self.coupon_ids),
                "group": self.group_id,
                "share": self.share_code,
            },
            sort_keys=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def hold_id(order_id: str, line_index: int) -> str:
    """The inventory hold of an order's line: the order id itself for the first line."""
    return order_id if line_index == 0 else f"{order_id}-{line_index + 1}"
