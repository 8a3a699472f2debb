"""Distribution programmes: how much commission an attributed order earns, and for whom.

Money is integer minor units. A rate is in basis points (1/100 of a percent) of what the
buyer paid for the line (``OrderLine.total_minor``), floored per line. A SKU's own rate wins
over its category's, which wins over the programme's default. Lines sold under an excluded
promotion kind earn nothing. Level 1 is the sharer; level 2 (when ``levels == 2``) is the
sharer's inviter at ``level_two_rate_bps``. Each beneficiary's commission on one order is
capped by ``per_order_cap_minor`` and their commission accrued on one UTC day by
``per_day_cap_minor`` (0: no cap).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from services.kit.errors import InvalidArgumentError, NotFoundError
from services.kit.tenancy import validate_merchant_id

MAX_RATE_BPS = 5_000
"""At most half of a line as commission (per level)."""
BPS = 10_000
DEFAULT_RETURN_WINDOW_SECONDS = 7 * 24 * 3600
DEFAULT_ATTRIBUTION_WINDOW_SECONDS = 24 * 3600
PROMOTION_KINDS = frozenset({"flash_sale", "group_buy", "room_special", "store_discount"})


class InvalidProgrammeError(InvalidArgumentError):
    pass


class ProgrammeNotFoundError(NotFoundError):
    pass


@dataclass(frozen=True)
class PricedLine:
    sku_id: str
    total_minor: int
    promotion_kind: str = ""


@dataclass(frozen=True)
class CommissionShare:
    beneficiary_id: str
    level: int
    amount_minor: int


@dataclass(frozen=True)
class Programme:
    merchant_id: str
    levels: int = 1
    default_rate_bps: int = 0
    sku_rates: Mapping[str, int] = field(default_factory=dict)
    category_rates: Mapping[str, int] = field(default_factory=dict)
    sku_categories: Mapping[str, str] = field(default_factory=dict)
    level_two_rate_bps: int = 0
    per_order_cap_minor: int = 0
    per_day_cap_minor: int = 0
    excluded_promotion_kinds: frozenset[str] = frozenset()
    return_window_seconds: int = DEFAULT_RETURN_WINDOW_SECONDS
    attribution_window_seconds: int = DEFAULT_ATTRIBUTION_WINDOW_SECONDS
    min_withdrawal_minor: int = 100
    currency: str = "CNY"
    version: int = 0

    @staticmethod
    def stream_id(merchant_id: str) -> str:
        return f"programme:{validate_merchant_id(merchant_id)}"

    def validated(self) -> Programme:
        if self.levels not in (1, 2):
            raise InvalidProgrammeError("a programme has one or two levels")
        rates = [
            self.default_rate_bps,
            self.level_two_rate_bps,
            *self.sku_rates.values(),
            *self.category_rates.values(),
        ]
        if any(not 0 <= r <= MAX_RATE_BPS for r in rates):
            raise InvalidProgrammeError(f"rates are 0 to {MAX_RATE_BPS} basis points")
        if self.levels == 1 and self.level_two_rate_bps:
            raise InvalidProgrammeError("a one-level programme has no level 2 rate")
        for name in ("per_order_cap_minor", "per_day_cap_minor", "min_withdrawal_minor"):
            if getattr(self, name) < 0:
                raise InvalidProgrammeError(f"{name} is 0 or more")
        if not 0 <= self.return_window_seconds <= 90 * 24 * 3600:
            raise InvalidProgrammeError("the return window is 0 to 90 days")
        if not 60 <= self.attribution_window_seconds <= 30 * 24 * 3600:
            raise InvalidProgrammeError("the attribution window is 1 minute to 30 days")
        unknown = self.excluded_promotion_kinds - PROMOTION_KINDS
        if unknown:
            raise InvalidProgrammeError(f"unknown promotion kinds: {', '.join(sorted(unknown))}")
        if len(self.currency) != 3 or not self.currency.isupper():
            raise InvalidProgrammeError("a currency is an ISO 4217 code")
        return self

    def rate_for(self, sku_id: str) -> int:
        if sku_id in self.sku_rates:
            return self.sku_rates[sku_id]
        category = self.sku_categories.get(sku_id)
        if category is not None and category in self.category_rates:
            return self.category_rates[category]
        return self.default_rate_bps

    def base_commission(self, lines: Sequence[PricedLine]) -> tuple[int, int]:
        """Level 1 and level 2 commission of the lines before caps."""
        level_one = level_two = 0
        for line in lines:
            if line.promotion_kind in self.excluded_promotion_kinds or line.total_minor <= 0:
                continue
            level_one += line.total_minor * self.rate_for(line.sku_id) // BPS
            if self.levels == 2:
                level_two += line.total_minor * self.level_two_rate_bps // BPS
        return level_one, level_two

    def commission(
        self,
        lines: Sequence[PricedLine],
        sharer_id: str,
        level_two_id: str,
        accrued_today: Mapping[str, int],
    ) -> tuple[list[CommissionShare], list[str]]:
        """The shares the order earns after caps, and notes on what reduced them."""
        level_one, level_two = self.base_commission(lines)
        wanted = [(sharer_id, 1, level_one)]
        if self.levels == 2 and level_two_id:
            wanted.append((level_two_id, 2, level_two))
        shares: list[CommissionShare] = []
        notes: list[str] = []
        for beneficiary, level, amount in wanted:
            if self.per_order_cap_minor and amount > self.per_order_cap_minor:
                amount = self.per_order_cap_minor
                notes.append(f"level {level} capped per order")
            if self.per_day_cap_minor:
                room = max(0, self.per_day_cap_minor - accrued_today.get(beneficiary, 0))
                if amount > room:
                    amount = room
                    notes.append(f"level {level} capped per day")
            if amount > 0:
                shares.append(CommissionShare(beneficiary, level, amount))
        return shares, notes


@dataclass(frozen=True)
class ProgrammeConfigured:
    programme: Programme
