"""Money as whole minor units (cents, fen, yen) of one currency, and exact allocation.

Never floats: an amount is a Python ``int`` (``bool`` and ``float`` are refused) between
zero and the largest int64, the wire's limit. Money in a quote is never negative, so a
subtraction that would go below zero is an error, not a negative amount. Two amounts in
different currencies never meet: adding, subtracting or comparing them is an error.

Rates are basis points (1 bp = 0.01 %, 10 000 bp = 100 %) so that "12.5 % off" is exact.

``allocate`` splits a total across parts in proportion to weights with the largest-remainder
method: every part gets the floor of its exact share, and the minor units left over go one
each to the parts with the largest remainders, ties to the earlier part. The parts always
sum exactly to the total, and the same input always gives the same split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.kit.errors import InvalidArgumentError

MAX_AMOUNT = 2**63 - 1
BASIS_POINTS = 10_000
"""100 % in basis points."""


class InvalidAmountError(InvalidArgumentError):
    """An amount that is not a whole number of minor units within 0..int64."""


class NegativeAmountError(InvalidAmountError):
    pass


class InvalidCurrencyError(InvalidArgumentError):
    pass


class CurrencyMismatchError(InvalidArgumentError):
    pass


class InvalidAllocationError(InvalidArgumentError):
    pass


def validate_currency(currency: str) -> str:
    """An ISO 4217 code: three upper-case ASCII letters."""
    if not (
        isinstance(currency, str)
        and len(currency) == 3
        and currency.isascii()
        and currency.isalpha()
        and currency.isupper()
    ):
        raise InvalidCurrencyError(
            f"a currency is three upper-case letters (ISO 4217), not {currency!r}"
        )
    return currency


def validate_amount(amount: int, what: str = "an amount") -> int:
    """A whole number of minor units, 0..int64: refuses floats, bools and negatives."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidAmountError(
            f"{what} is a whole number of minor units, not {type(amount).__name__} {amount!r}"
        )
    if amount < 0:
        raise NegativeAmountError(f"{what} cannot be negative, got {amount}")
    if amount > MAX_AMOUNT:
        raise InvalidAmountError(f"{what} exceeds {MAX_AMOUNT} minor units")
    return amount


@dataclass(frozen=True)
class Money:
    """A non-negative amount of minor units of one currency. Shown as ``CNY 1234``
    (minor units, whatever the currency's exponent)."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        validate_currency(self.currency)
        validate_amount(self.amount)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def __str__(self) -> str:
        return f"{self.currency} {self.amount}"

    def _same_currency(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise InvalidAmountError(f"cannot combine money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatchError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        """Refuses to go below zero: money in a quote is never negative."""
        self._same_currency(other)
        if other.amount > self.amount:
            raise NegativeAmountError(f"{self} minus {other} would be negative")
        return Money(self.amount - other.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same_currency(other)
        return self.amount >= other.amount

    def times(self, quantity: int) -> Money:
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
            raise InvalidAmountError(f"multiply money by a whole number >= 0, not {quantity!r}")
        return Money(self.amount * quantity, self.currency)

    def percent_down(self, basis_points: int) -> Money:
        """``basis_points`` of this amount, rounded down to a whole minor unit: a discount
        computed this way never exceeds the stated rate."""
        if isinstance(basis_points, bool) or not isinstance(basis_points, int):
            raise InvalidAmountError(f"a rate is whole basis points, not {basis_points!r}")
        if not 0 <= basis_points <= BASIS_POINTS:
            raise InvalidAmountError(f"a rate is 0 to {BASIS_POINTS} bp, got {basis_points}")
        return Money(self.amount * basis_points // BASIS_POINTS, self.currency)

    def percent_up(self, basis_points: int) -> Money:
        """``basis_points`` of this amount, rounded up: a floor computed this way is never
        below the stated rate."""
        if isinstance(basis_points, bool) or not isinstance(basis_points, int):
            raise InvalidAmountError(f"a rate is whole basis points, not {basis_points!r}")
        if not 0 <= basis_points <= BASIS_POINTS:
            raise InvalidAmountError(f"a rate is 0 to {BASIS_POINTS} bp, got {basis_points}")
        return Money(-(-self.amount * basis_points // BASIS_POINTS), self.currency)


def total(amounts: Sequence[Money], currency: str) -> Money:
    """The sum of ``amounts``, all in ``currency`` (zero for none)."""
    result = Money.zero(currency)
    for amount in amounts:
        result = result + amount
    return result


def allocate(amount: int, weights: Sequence[int]) -> tuple[int, ...]:
    """Split ``amount`` minor units in proportion to ``weights`` (largest remainder, ties to
    the earlier part). The parts sum exactly to ``amount``; a zero weight gets zero."""
    validate_amount(amount, "the amount to allocate")
    for weight in weights:
        validate_amount(weight, "a weight")
    weight_sum = sum(weights)
    if weight_sum == 0:
        if amount == 0:
            return tuple(0 for _ in weights)
        raise InvalidAllocationError(f"cannot allocate {amount} across zero total weight")
    parts = [amount * weight // weight_sum for weight in weights]
    remainders = [amount * weight % weight_sum for weight in weights]
    left_over = amount - sum(parts)
    by_largest_remainder = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for index in by_largest_remainder[:left_over]:
        parts[index] += 1
    return tuple(parts)


def allocate_capped(amount: int, weights: Sequence[int], caps: Sequence[int]) -> tuple[int, ...]:
    """Like ``allocate``, but no part exceeds its cap: a part whose proportional share
    would pass its cap is held at the cap and the rest is allocated again among the others
    by their weights, until every part fits. The caps must add up to at least ``amount``;
    parts with a cap but no weight share what weighted parts cannot take, by their caps."""
    validate_amount(amount, "the amount to allocate")
    if len(caps) != len(weights):
        raise InvalidAllocationError("one cap per weight")
    for cap in caps:
        validate_amount(cap, "a cap")
    if sum(caps) < amount:
        raise InvalidAllocationError(f"caps add up to {sum(caps)}, less than {amount}")
    parts = [0] * len(weights)
    open_parts = [i for i in range(len(weights)) if caps[i] > 0]
    remaining = amount
    while remaining > 0:
        open_weights = [weights[i] for i in open_parts]
        if sum(open_weights) == 0:
            open_weights = [caps[i] for i in open_parts]
        shares = allocate(remaining, open_weights)
        over = [i for i, share in zip(open_parts, shares, strict=True) if share > caps[i]]
        if not over:
            for i, share in zip(open_parts, shares, strict=True):
                parts[i] = share
            break
        for i in over:
            parts[i] = caps[i]
            remaining -= caps[i]
        open_parts = [i for i in open_parts if i not in over]
    return tuple(parts)
