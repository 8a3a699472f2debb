"""Reading promotion's PriceOrder reply: the contract's one sale per line is checked."""

from __future__ import annotations

import pytest

from livecommerce.promotion.v1 import promotion_pb2 as pb
from services.kit.errors import UnavailableError
from services.order.adapters.promotion_client import priced_from_proto


def _reply(sale_ids: list[str]) -> pb.PriceOrderReply:
    line = pb.LineQuote(sku_id="sku-1", quantity=2)
    line.total.amount_minor = 1800
    quote = pb.QuoteReply(currency="CNY", lines=[line])
    quote.total.amount_minor = 1800
    return pb.PriceOrderReply(quote=quote, sale_ids=sale_ids, locked_coupon_ids=["c1"])


def test_a_priced_line_carries_the_sale_promotion_named_for_it() -> None:
    priced = priced_from_proto(_reply(["sale-1"]))
    assert [(x.sku_id, x.sale_id, x.total) for x in priced.lines] == [("sku-1", "sale-1", 1800)]
    assert priced.totals.total == 1800
    assert priced.locked_coupon_ids == ("c1",)


def test_a_reply_without_a_sale_for_every_line_is_the_callees_fault_not_a_500() -> None:
    with pytest.raises(UnavailableError, match="1 priced lines with 0 sales"):
        priced_from_proto(_reply([]))
