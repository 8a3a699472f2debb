"""Ids: merchant ids (the tenant key every resource and stream id carries) and the rule for
every other id.

Standard library only, so domain code can validate with it.
"""

from __future__ import annotations

import re

from services.kit.errors import InvalidArgumentError

MERCHANT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""Letters, digits, '.', '_' and '-', never ':': ids built as ``kind:merchant:rest`` can then
never be read as another merchant's."""


MAX_ID_LENGTH = 64


class InvalidMerchantIdError(InvalidArgumentError):
    pass


class InvalidIdError(InvalidArgumentError):
    pass


def validate_id(value: str, what: str) -> str:
    """Every other id (SKU, sale, hold, coupon, user ...): 1..64 printable characters
    without spaces."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_ID_LENGTH
        or not value.isprintable()
        or " " in value
    ):
        raise InvalidIdError(
            f"a {what} is 1 to {MAX_ID_LENGTH} printable characters without spaces"
        )
    return value


def is_merchant_id(value: object) -> bool:
    return isinstance(value, str) and MERCHANT_ID_PATTERN.match(value) is not None


def validate_merchant_id(value: str) -> str:
    if not is_merchant_id(value):
        raise InvalidMerchantIdError(
            "a merchant id is 1 to 64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return value
