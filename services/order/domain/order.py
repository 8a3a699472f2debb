"""The order aggregate: its events, its state machine, and the money of refunds.

PendingPayment -> Paid -> Shipped -> Delivered -> Completed
PendingPayment -> Cancelled (buyer, timeout, group buy failed)
Paid -> Cancelled (group buy failed: the payment is refunded)
Paid -> RefundRequested -> Refunded (all lines) | Paid (some lines: the rest ships)
Delivered -> return requested -> approved | rejected; approved -> received -> refunded

Every transition is a method that checks the order may take it and returns the events
that record it; the order itself changes only by applying events, so replaying a stream
rebuilds exactly the order that was saved. A transition the order cannot take raises
IllegalTransitionError and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from services.kit.errors import InvalidArgumentError, NotFoundError, PreconditionFailedError

MAX_LINES = 50
MAX_QUANTITY = 10_000


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    REFUND_REQUESTED = "refund_requested"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class CancelReason(StrEnum):
    BUYER = "buyer"
    TIMEOUT = "timeout"
    GROUP_FAILED = "group_failed"
    MERCHANT = "merchant"


class Channel(StrEnum):
    MINI_PROGRAM = "mini_program"
    H5 = "h5"
    APP = "app"


class ReturnKind(StrEnum):
    RETURN = "return"
    EXCHANGE = "exchange"


class ReturnState(StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    RECEIVED = "received"


class IllegalTransitionError(PreconditionFailedError):
    """The order's state does not allow the step asked for."""


class PaymentMismatchError(InvalidArgumentError):
    """A payment notification whose amount or currency is not the order's total."""


class InvalidRefundError(InvalidArgumentError):
    """Refund or return lines that are not on the order or exceed what is left."""


class ReturnNotFoundError(NotFoundError):
    pass


# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderLine:
    sku_id: str
    quantity: int
    sale_id: str
    hold_id: str
    list_unit_price: int
    unit_price: int
    promotion_discount: int
    coupon_share: int
    total: int
    promotion_kind: str = ""
    promotion_id: str = ""


@dataclass(frozen=True)
class Totals:
    subtotal: int
    promotion_discount: int
    coupon_discount: int
    shipping_fee: int
    shipping_discount: int
    total: int


@dataclass(frozen=True)
class OrderPlaced:
    order_id: str
    buyer_id: str
    room_id: str
    channel: str
    currency: str
    lines: tuple[OrderLine, ...]
    coupon_ids: tuple[str, ...]
    group_id: str
    share_code: str
    totals: Totals
    payment_deadline: datetime
    price_explanation: tuple[str, ...] = ()


@dataclass(frozen=True)
class PaymentStarted:
    order_id: str
    payment_id: str
    provider: str
    amount: int
    currency: str
    pay_url: str


@dataclass(frozen=True)
class OrderPaid:
    order_id: str
    payment_id: str
    provider: str
    provider_transaction_id: str
    amount: int
    currency: str
    paid_at: datetime


@dataclass(frozen=True)
class OrderCancelled:
    order_id: str
    reason: CancelReason
    was_paid: bool


@dataclass(frozen=True)
class OrderShipped:
    order_id: str
    carrier: str
    tracking_number: str
    shipped_at: datetime


@dataclass(frozen=True)
class OrderDelivered:
    order_id: str
    delivered_at: datetime
    auto_complete_at: datetime


@dataclass(frozen=True)
class OrderCompleted:
    order_id: str


@dataclass(frozen=True)
class RefundLine:
    sku_id: str
    quantity: int
    amount: int


@dataclass(frozen=True)
class RefundRequested:
    order_id: str
    refund_id: str
    lines: tuple[RefundLine, ...]
    amount: int
    reason: str


@dataclass(frozen=True)
class OrderRefunded:
    order_id: str
    refund_id: str
    lines: tuple[RefundLine, ...]
    amount: int
    full: bool
    before_shipping: bool
    provider_refund_id: str


@dataclass(frozen=True)
class ReturnRequested:
    order_id: str
    return_id: str
    kind: ReturnKind
    lines: tuple[RefundLine, ...]
    reason: str


@dataclass(frozen=True)
class ReturnApproved:
    order_id: str
    return_id: str


@dataclass(frozen=True)
class ReturnRejected:
    order_id: str
    return_id: str
    reason: str


@dataclass(frozen=True)
class ReturnReceived:
    order_id: str
    return_id: str


@dataclass(frozen=True)
class PaymentRefundedAutomatically:
    order_id: str
    payment_id: str
    amount: int
    provider_refund_id: str
    reason: str


OrderEvent = (
    OrderPlaced
    | PaymentStarted
    | OrderPaid
    | OrderCancelled
    | OrderShipped
    | OrderDelivered
    | OrderCompleted
    | RefundRequested
    | OrderRefunded
    | ReturnRequested
    | ReturnApproved
    | ReturnRejected
    | ReturnReceived
    | PaymentRefundedAutomatically
)


# --- the aggregate ------------------------------------------------------------------------


@dataclass(frozen=True)
class Payment:
    payment_id: str
    provider: str
    amount: int
    pay_url: str
    paid: bool = False
    provider_transaction_id: str = ""
    paid_at: datetime | None = None


@dataclass(frozen=True)
class Refund:
    refund_id: str
    lines: tuple[RefundLine, ...]
    amount: int
    reason: str
    refunded: bool = False
    provider_refund_id: str = ""


@dataclass(frozen=True)
class Return:
    return_id: str
    kind: ReturnKind
    lines: tuple[RefundLine, ...]
    reason: str
    state: ReturnState


@dataclass(frozen=True)
class Order:
    merchant_id: str
    order_id: str
    version: int = 0
    placed: OrderPlaced | None = None
    status: OrderStatus = OrderStatus.PENDING_PAYMENT
    payment: Payment | None = None
    cancel_reason: CancelReason | None = None
    carrier: str = ""
    tracking_number: str = ""
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None
    auto_complete_at: datetime | None = None
    refunds: Mapping[str, Refund] = field(default_factory=dict)
    returns: Mapping[str, Return] = field(default_factory=dict)
    automatic_refunds: Mapping[str, PaymentRefundedAutomatically] = field(default_factory=dict)

    @staticmethod
    def stream_id(merchant_id: str, order_id: str) -> str:
        return f"order:{merchant_id}:{order_id}"

    @classmethod
    def replay(cls, merchant_id: str, order_id: str, events: Iterable[OrderEvent]) -> Order:
        order = cls(merchant_id, order_id)
        for event in events:
            order = order.apply(event)
        return order

    # -- reading

    @property
    def exists(self) -> bool:
        return self.placed is not None

    @property
    def details(self) -> OrderPlaced:
        if self.placed is None:
            raise NotFoundError(f"order {self.order_id} not found")
        return self.placed

    @property
    def payment_owed_back(self) -> Payment | None:
        """The payment a cancelled order took and has not yet given back.

        Only a failed group cancels a paid order; the cancellation and the automatic refund
        are two appends with the provider's refund between them, so a crash can leave the
        first without the second. Whoever sees this order again finishes the refund."""
        payment = self.payment
        if self.status is not OrderStatus.CANCELLED or payment is None or not payment.paid:
            return None
        return None if payment.payment_id in self.automatic_refunds else payment

    @property
    def hold_ids(self) -> tuple[str, ...]:
        return tuple(line.hold_id for line in self.details.lines)

    @property
    def refunded_amount(self) -> int:
        return sum(r.amount for r in self.refunds.values() if r.refunded)

    def refunded_quantity(self, sku_id: str, *, including_requested: bool = True) -> int:
        return sum(
            line.quantity
            for refund in self.refunds.values()
            if refund.refunded or including_requested
            for line in refund.lines
            if line.sku_id == sku_id
        )

    @property
    def open_return(self) -> Return | None:
        for found in self.returns.values():
            if found.state in (ReturnState.REQUESTED, ReturnState.APPROVED):
                return found
        return None

    @property
    def pending_refund(self) -> Refund | None:
        for refund in self.refunds.values():
            if not refund.refunded:
                return refund
        return None

    # -- transitions

    def place(self, placed: OrderPlaced) -> list[OrderEvent]:
        if self.exists:
            raise IllegalTransitionError(f"order {self.order_id} was already placed")
        return [placed]

    def ensure_payable(self, now: datetime) -> None:
        """Raise unless a payment may be opened for the order now."""
        self._require(OrderStatus.PENDING_PAYMENT, "pay for")
        if now >= self.details.payment_deadline:
            raise IllegalTransitionError(f"order {self.order_id} is past its payment deadline")

    def start_payment(self, started: PaymentStarted, now: datetime) -> list[OrderEvent]:
        """Idempotent: the same payment again is nothing new."""
        self.ensure_payable(now)
        if self.payment is not None and self.payment.payment_id == started.payment_id:
            return []
        return [started]

    def record_payment(
        self,
        payment_id: str,
        provider: str,
        provider_transaction_id: str,
        amount: int,
        currency: str,
        paid_at: datetime,
    ) -> list[OrderEvent]:
        """A payment succeeded. Nothing new if it was recorded already; raise if the order
        cannot take it (the caller then refunds it) or the amount is not the order's."""
        details = self.details
        if self.payment is not None and self.payment.paid:
            if self.payment.payment_id == payment_id:
                return []
            raise IllegalTransitionError(f"order {self.order_id} was already paid")
        if amount != details.totals.total or currency != details.currency:
            raise PaymentMismatchError(
                f"payment of {amount} {currency} does not match the order's total of"
                f" {details.totals.total} {details.currency}"
            )
        self._require(OrderStatus.PENDING_PAYMENT, "pay for")
        return [
            OrderPaid(
                self.order_id,
                payment_id,
                provider,
                provider_transaction_id,
                amount,
                currency,
                paid_at,
            )
        ]

    def can_take_payment(self, now: datetime) -> bool:
        return self.status is OrderStatus.PENDING_PAYMENT and now < self.details.payment_deadline

    def cancel(self, reason: CancelReason) -> list[OrderEvent]:
        if self.status is OrderStatus.CANCELLED:
            return []
        if reason is CancelReason.GROUP_FAILED and self.status is OrderStatus.PAID:
            return [OrderCancelled(self.order_id, reason, was_paid=True)]
        self._require(OrderStatus.PENDING_PAYMENT, "cancel")
        return [OrderCancelled(self.order_id, reason, was_paid=False)]

    def refund_automatically(
        self, payment_id: str, amount: int, provider_refund_id: str, reason: str
    ) -> list[OrderEvent]:
        """Record that a payment the order could not take was given back (idempotent)."""
        if payment_id in self.automatic_refunds:
            return []
        return [
            PaymentRefundedAutomatically(
                self.order_id, payment_id, amount, provider_refund_id, reason
            )
        ]

    def ship(self, carrier: str, tracking_number: str, at: datetime) -> list[OrderEvent]:
        if self.status is OrderStatus.SHIPPED and self.tracking_number == tracking_number:
            return []
        self._require(OrderStatus.PAID, "ship")
        if not carrier.strip() or not tracking_number.strip():
            raise InvalidArgumentError("carrier and tracking number are required")
        return [OrderShipped(self.order_id, carrier, tracking_number, at)]

    def deliver(self, at: datetime, complete_after: timedelta) -> list[OrderEvent]:
        if self.status is OrderStatus.DELIVERED:
            return []
        self._require(OrderStatus.SHIPPED, "deliver")
        return [OrderDelivered(self.order_id, at, at + complete_after)]

    def complete(self) -> list[OrderEvent]:
        if self.status is OrderStatus.COMPLETED:
            return []
        self._require(OrderStatus.DELIVERED, "complete")
        if self.open_return is not None or self.pending_refund is not None:
            raise IllegalTransitionError(
                f"order {self.order_id} has an after-sales request open; it completes later"
            )
        return [OrderCompleted(self.order_id)]

    def request_refund(
        self, refund_id: str, wanted: Sequence[tuple[str, int]], reason: str
    ) -> list[OrderEvent]:
        """Refund lines of a paid order that has not shipped. Idempotent on refund_id."""
        if refund_id in self.refunds:
            return []
        self._require(OrderStatus.PAID, "refund")
        lines = self._refund_lines(wanted)
        return [
            RefundRequested(self.order_id, refund_id, lines, sum(x.amount for x in lines), reason)
        ]

    def record_refund(self, refund_id: str, provider_refund_id: str) -> list[OrderEvent]:
        refund = self.refunds.get(refund_id)
        if refund is None:
            raise NotFoundError(f"refund {refund_id} not found on order {self.order_id}")
        if refund.refunded:
            return []
        after = self.refunded_amount + refund.amount
        full = all(
            self.refunded_quantity(line.sku_id, including_requested=False)
            + sum(x.quantity for x in refund.lines if x.sku_id == line.sku_id)
            >= line.quantity
            for line in self.details.lines
        )
        before_shipping = self.shipped_at is None
        return [
            OrderRefunded(
                self.order_id,
                refund_id,
                refund.lines,
                refund.amount,
                full=full or after >= self.details.totals.total,
                before_shipping=before_shipping,
                provider_refund_id=provider_refund_id,
            )
        ]

    def request_return(
        self, return_id: str, kind: ReturnKind, wanted: Sequence[tuple[str, int]], reason: str
    ) -> list[OrderEvent]:
        if return_id in self.returns:
            return []
        self._require(OrderStatus.DELIVERED, "return goods of")
        if self.open_return is not None:
            raise IllegalTransitionError(f"order {self.order_id} already has a return open")
        lines = self._refund_lines(wanted)
        return [ReturnRequested(self.order_id, return_id, kind, lines, reason)]

    def approve_return(self, return_id: str) -> list[OrderEvent]:
        found = self._return(return_id)
        if found.state is ReturnState.APPROVED:
            return []
        self._require_return(found, ReturnState.REQUESTED, "approve")
        return [ReturnApproved(self.order_id, return_id)]

    def reject_return(self, return_id: str, reason: str) -> list[OrderEvent]:
        found = self._return(return_id)
        if found.state is ReturnState.REJECTED:
            return []
        self._require_return(found, ReturnState.REQUESTED, "reject")
        return [ReturnRejected(self.order_id, return_id, reason)]

    def receive_return(self, return_id: str) -> list[OrderEvent]:
        """The goods came back; a return (not an exchange) asks for its refund with it."""
        found = self._return(return_id)
        if found.state is ReturnState.RECEIVED:
            return []
        self._require_return(found, ReturnState.APPROVED, "receive")
        events: list[OrderEvent] = [ReturnReceived(self.order_id, return_id)]
        if found.kind is ReturnKind.RETURN:
            amount = sum(line.amount for line in found.lines)
            events.append(
                RefundRequested(self.order_id, return_id, found.lines, amount, found.reason)
            )
        return events

    # -- applying events

    def apply(self, event: OrderEvent) -> Order:
        moved = self._applied(event)
        return replace(moved, version=self.version + 1)

    def _applied(self, event: OrderEvent) -> Order:
        match event:
            case OrderPlaced():
                return replace(self, placed=event, status=OrderStatus.PENDING_PAYMENT)
            case PaymentStarted():
                payment = Payment(event.payment_id, event.provider, event.amount, event.pay_url)
                return replace(self, payment=payment)
            case OrderPaid():
                paid = Payment(
                    event.payment_id,
                    event.provider,
                    event.amount,
                    self.payment.pay_url if self.payment else "",
                    paid=True,
                    provider_transaction_id=event.provider_transaction_id,
                    paid_at=event.paid_at,
                )
                return replace(self, payment=paid, status=OrderStatus.PAID)
            case OrderCancelled():
                return replace(self, status=OrderStatus.CANCELLED, cancel_reason=event.reason)
            case OrderShipped():
                return replace(
                    self,
                    status=OrderStatus.SHIPPED,
                    carrier=event.carrier,
                    tracking_number=event.tracking_number,
                    shipped_at=event.shipped_at,
                )
            case OrderDelivered():
                return replace(
                    self,
                    status=OrderStatus.DELIVERED,
                    delivered_at=event.delivered_at,
                    auto_complete_at=event.auto_complete_at,
                )
            case OrderCompleted():
                return replace(self, status=OrderStatus.COMPLETED)
            case RefundRequested():
                refunds = dict(self.refunds)
                refunds[event.refund_id] = Refund(
                    event.refund_id, event.lines, event.amount, event.reason
                )
                requested: OrderStatus = (
                    OrderStatus.REFUND_REQUESTED if self.status is OrderStatus.PAID else self.status
                )
                return replace(self, refunds=refunds, status=requested)
            case OrderRefunded():
                refunds = dict(self.refunds)
                refunds[event.refund_id] = replace(
                    refunds[event.refund_id],
                    refunded=True,
                    provider_refund_id=event.provider_refund_id,
                )
                after: OrderStatus = self.status
                if event.full:
                    after = OrderStatus.REFUNDED
                elif self.status is OrderStatus.REFUND_REQUESTED:
                    after = OrderStatus.PAID
                return replace(self, refunds=refunds, status=after)
            case ReturnRequested():
                return self._with_return(
                    Return(
                        event.return_id,
                        event.kind,
                        event.lines,
                        event.reason,
                        ReturnState.REQUESTED,
                    )
                )
            case ReturnApproved():
                return self._with_return_state(event.return_id, ReturnState.APPROVED)
            case ReturnRejected():
                return self._with_return_state(event.return_id, ReturnState.REJECTED)
            case ReturnReceived():
                return self._with_return_state(event.return_id, ReturnState.RECEIVED)
            case PaymentRefundedAutomatically():
                automatic = dict(self.automatic_refunds)
                automatic[event.payment_id] = event
                return replace(self, automatic_refunds=automatic)
        raise TypeError(f"not an order event: {event!r}")

    # -- helpers

    def _require(self, status: OrderStatus, action: str) -> None:
        self.details  # noqa: B018 - raises NotFoundError for an order never placed
        if self.status is not status:
            raise IllegalTransitionError(
                f"cannot {action} order {self.order_id}: it is {self.status.value},"
                f" not {status.value}"
            )

    def _refund_lines(self, wanted: Sequence[tuple[str, int]]) -> tuple[RefundLine, ...]:
        """The money of refunding ``wanted`` units: each line's total is shared out per
        unit so that refunding every unit, in any number of steps, gives back exactly the
        line's total (integer shares: the cumulative amount is floor(total x units / qty))."""
        if not wanted:
            raise InvalidRefundError("name at least one line to refund")
        by_sku = {line.sku_id: line for line in self.details.lines}
        seen: set[str] = set()
        lines = []
        for sku_id, quantity in wanted:
            line = by_sku.get(sku_id)
            if line is None:
                raise InvalidRefundError(f"SKU {sku_id} is not on order {self.order_id}")
            if sku_id in seen:
                raise InvalidRefundError(f"SKU {sku_id} is named twice")
            seen.add(sku_id)
            already = self.refunded_quantity(sku_id) + self._returned_quantity(sku_id)
            if not 1 <= quantity <= line.quantity - already:
                raise InvalidRefundError(
                    f"SKU {sku_id}: {line.quantity - already} unit(s) can be refunded,"
                    f" not {quantity}"
                )
            amount = share_of(line.total, line.quantity, already + quantity) - share_of(
                line.total, line.quantity, already
            )
            lines.append(RefundLine(sku_id, quantity, amount))
        return tuple(lines)

    def _returned_quantity(self, sku_id: str) -> int:
        """Units in returns not yet turned into refunds (open, or an exchange)."""
        return sum(
            line.quantity
            for found in self.returns.values()
            if found.state is not ReturnState.REJECTED and found.return_id not in self.refunds
            for line in found.lines
            if line.sku_id == sku_id
        )

    def _return(self, return_id: str) -> Return:
        found = self.returns.get(return_id)
        if found is None:
            raise ReturnNotFoundError(f"return {return_id} not found on order {self.order_id}")
        return found

    def _require_return(self, found: Return, state: ReturnState, action: str) -> None:
        if found.state is not state:
            raise IllegalTransitionError(
                f"cannot {action} return {found.return_id}: it is {found.state.value}"
            )

    def _with_return(self, found: Return) -> Order:
        returns = dict(self.returns)
        returns[found.return_id] = found
        return replace(self, returns=returns)

    def _with_return_state(self, return_id: str, state: ReturnState) -> Order:
        return self._with_return(replace(self.returns[return_id], state=state))


def share_of(total: int, quantity: int, units: int) -> int:
    """The part of ``total`` that ``units`` of ``quantity`` units carry, rounded down."""
    return total * units // quantity
