"""The order handlers: the checkout saga, payments, the unpaid timeout, shipping, refunds
and returns. Each handler loads the order, asks it for the events of one step, and saves
them with the timers that step starts or stops, in one transaction.

Checkout is a saga of three steps, each idempotent on the order id, each undone when a
later one fails: price and lock the coupons (promotion), hold the stock (inventory), record
OrderPlaced. The undo steps have a backstop: a hold expires by its time-to-live and a coupon
lock by its lock time, so a crash between steps never keeps stock or coupons for good.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import uuid4

from prometheus_client import Counter

from services.kit.errors import (
    ConcurrencyError,
    KitError,
    NotFoundError,
    OutcomeUnknownError,
    UnavailableError,
)
from services.kit.eventstore import utcnow
from services.kit.logging import get_logger
from services.kit.sold_out import SoldOutMemory
from services.order.application.payments import (
    PaymentProvider,
    PaymentRequest,
    PaymentStatus,
)
from services.order.application.ports import (
    Claim,
    IdempotencyKey,
    IdempotencyKeys,
    OrderStore,
    PricedOrder,
    PriceOrderQuery,
    Pricing,
    SoldOutError,
    Stock,
    TimerChange,
)
from services.order.domain.checkout import IdempotencyKeyReusedError, PlaceOrder, hold_id
from services.order.domain.order import (
    CancelReason,
    Order,
    OrderDelivered,
    OrderEvent,
    OrderLine,
    OrderPlaced,
    OrderStatus,
    PaymentStarted,
    RefundRequested,
    ReturnKind,
)

log = get_logger(__name__)

PAYMENT_DEADLINE_TIMER = "order.payment-deadline"
AUTO_COMPLETE_TIMER = "order.auto-complete"
REFUND_TIMER = "order.refund"
REFUND_RETRY_DELAY = timedelta(seconds=30)
DUPLICATE_WAIT_SECONDS = 10.0
SOLD_OUT_REMEMBERED = Counter(
    "livecommerce_order_sold_out_remembered_total",
    "Checkouts refused from the process's sold-out memory, without pricing or reserving",
)


@dataclass(frozen=True)
class Payable:
    order_id: str
    payment_id: str
    pay_url: str
    amount: int
    currency: str


@dataclass
class _Progress:
    """How far one checkout got, for what its failure or cancellation must undo."""

    held: list[str] = field(default_factory=list)
    """The holds inventory granted, in line order."""
    saving: bool = False
    """The order was handed to the store: from here a cancellation cannot tell whether it
    will be recorded."""

    def must_undo(self, error: BaseException) -> bool:
        """Whether ``error`` ends the checkout with nothing recorded, so what it took (holds,
        coupons, the key) must be given back: any failure but one whose outcome is unknown,
        and a cancellation (a shutdown) before the save was handed over. A cancellation
        after that may still be recorded, since the group commit is not the request's, and
        so may a save whose COMMIT lost the database (:class:`OutcomeUnknownError`):
        releasing the holds would leave a placed order without stock, and forgetting the key
        would let a retry place a second order. The holds and coupons then expire by their
        own time-to-live if it never was, and the key's lease runs out, after which a retry
        finds the order placed or takes the key over with this order id."""
        if isinstance(error, OutcomeUnknownError):
            return False
        return isinstance(error, Exception) or not self.saving


@dataclass(frozen=True)
class OrderPolicy:
    payment_margin: timedelta = timedelta(seconds=30)
    """The payment deadline is this long before the first hold expires, so a payment that
    arrives in time always finds its stock still held."""
    coupon_lock: timedelta = timedelta(minutes=20)
    auto_complete_after: timedelta = timedelta(days=7)
    notify_url: str = ""
    """Where the payment provider posts its notifications for this service."""


class Orders:
    def __init__(
        self,
        store: OrderStore,
        keys: IdempotencyKeys,
        pricing: Pricing,
        stock: Stock,
        payments: PaymentProvider,
        policy: OrderPolicy,
        *,
        clock: Callable[[], datetime] = utcnow,
        new_id: Callable[[], str] = lambda: uuid4().hex,
        sold_out: SoldOutMemory | None = None,
    ) -> None:
        """``sold_out``: what this process remembers sold out, by merchant, room and SKU
        (a second by default): see :meth:`place`."""
        self._store = store
        self._keys = keys
        self._pricing = pricing
        self._stock = stock
        self._payments = payments
        self._policy = policy
        self._clock = clock
        self._new_id = new_id
        self.sold_out = SoldOutMemory() if sold_out is None else sold_out

    # --- checkout -------------------------------------------------------------------------

    async def place(self, command: PlaceOrder, idempotency_key: str) -> Order:
        """Place the order once per idempotency key: a retry gets the same order (or the
        same refusal); the same key with another body is refused.

        A SKU this process found sold out in the room moments ago (see ``sold_out``) is
        refused at once, without pricing the order or asking inventory: the spike after
        the last unit is answered for the cost of one read. Only a key never seen before is
        refused so, and nothing is recorded for it (the refusal changed nothing); a key
        with a checkout behind it gets that checkout's answer, as always."""
        key = IdempotencyKey(command.merchant_id, command.buyer_id, idempotency_key)
        fingerprint = command.fingerprint()
        sold_out = self._remembered_sold_out(command)
        if sold_out is not None and await self._keys.get(key) is None:
            SOLD_OUT_REMEMBERED.inc()
            raise SoldOutError(f"SKU {sold_out} is sold out")
        claim = await self._keys.claim(key, fingerprint, self._new_id())
        if claim.fingerprint != fingerprint:
            raise IdempotencyKeyReusedError(
                "this Idempotency-Key was used for another order; use a fresh key per checkout"
            )
        if not claim.mine:
            return await self._outcome_of(key, claim, command)
        progress = _Progress()
        try:
            return await self._checkout(command, claim, key, progress)
        except BaseException as error:
            if isinstance(error, KitError) and not isinstance(error, UnavailableError):
                # A final refusal: the same key gets the same answer.
                await self._keys.fail(key, int(error.http_status), type(error).__name__, str(error))
            elif progress.must_undo(error):  # nothing recorded: a retry runs it again
                await self._keys.forget(key)
            raise

    def _remembered_sold_out(self, command: PlaceOrder) -> str | None:
        """The first SKU of the order remembered sold out in its room, or None."""
        for sku_id, _ in command.lines:
            if self.sold_out.knows(command.merchant_id, command.room_id, sku_id):
                return sku_id
        return None

    async def _outcome_of(self, key: IdempotencyKey, claim: Claim, command: PlaceOrder) -> Order:
        """A duplicate: wait for the first request's checkout to finish and answer as it."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + DUPLICATE_WAIT_SECONDS
        current: Claim | None = claim
        while True:
            if current is None:
                raise UnavailableError("the first checkout with this key failed; retry it")
            if current.state == "placed":
                return await self._store.load(command.merchant_id, current.order_id)
            if current.state == "failed" and current.failure is not None:
                raise RecordedCheckoutError(*current.failure)
            if loop.time() > give_up:
                raise CheckoutInProgressError(
                    "a checkout with this Idempotency-Key is still running; retry shortly"
                )
            await asyncio.sleep(0.05)
            current = await self._keys.get(key)

    async def _checkout(
        self, command: PlaceOrder, claim: Claim, key: IdempotencyKey, progress: _Progress
    ) -> Order:
        order_id = claim.order_id
        now = self._clock()
        priced = await self._pricing.price_order(
            PriceOrderQuery(
                merchant_id=command.merchant_id,
                buyer_id=command.buyer_id,
                room_id=command.room_id,
                channel=command.channel.value,
                group_id=command.group_id,
                lines=command.lines,
                coupon_ids=command.coupon_ids,
                order_id=order_id,
                lock_until=now + self._policy.coupon_lock,
            )
        )
        held = progress.held
        try:
            deadline = await self._hold_stock(command, claim, priced, held)
            order = Order(command.merchant_id, order_id)
            placed = OrderPlaced(
                order_id=order_id,
                buyer_id=command.buyer_id,
                room_id=command.room_id,
                channel=command.channel.value,
                currency=priced.currency,
                lines=tuple(
                    OrderLine(
                        sku_id=line.sku_id,
                        quantity=line.quantity,
                        sale_id=line.sale_id,
                        hold_id=hold_id(order_id, index),
                        list_unit_price=line.list_unit_price,
                        unit_price=line.unit_price,
                        promotion_discount=line.promotion_discount,
                        coupon_share=line.coupon_share,
                        total=line.total,
                        promotion_kind=line.promotion_kind,
                        promotion_id=line.promotion_id,
                    )
                    for index, line in enumerate(priced.lines)
                ),
                coupon_ids=priced.locked_coupon_ids,
                group_id=command.group_id,
                share_code=command.share_code,
                totals=priced.totals,
                payment_deadline=deadline,
                price_explanation=priced.explanation,
            )
            progress.saving = True
            return await self._store.save(
                order,
                order.place(placed),
                [TimerChange(PAYMENT_DEADLINE_TIMER, order_id, deadline)],
                idempotency=key,
            )
        except BaseException as error:
            if progress.must_undo(error):
                await self._compensate(
                    command.merchant_id, order_id, held, bool(priced.locked_coupon_ids)
                )
            raise

    async def _hold_stock(
        self, command: PlaceOrder, claim: Claim, priced: PricedOrder, held: list[str]
    ) -> datetime:
        expiries = []
        for index, line in enumerate(priced.lines):
            hold = hold_id(claim.order_id, index)
            reservation = await self._stock.reserve(
                command.merchant_id,
                line.sale_id,
                command.buyer_id,
                line.quantity,
                hold,
                again=claim.resumed,
            )
            if not reservation.reserved:
                self.sold_out.remember(command.merchant_id, command.room_id, line.sku_id)
                raise SoldOutError(f"SKU {line.sku_id} is sold out")
            self.sold_out.forget(command.merchant_id, command.room_id, line.sku_id)
            held.append(hold)
            if reservation.expires_at is not None:
                expiries.append(reservation.expires_at)
        now = self._clock()
        first_expiry = min(expiries, default=now + self._policy.coupon_lock)
        deadline = first_expiry - self._policy.payment_margin
        return deadline if deadline > now else first_expiry

    async def _compensate(
        self, merchant_id: str, order_id: str, held: list[str], coupons_locked: bool
    ) -> None:
        """Best effort: what is not undone here expires by its own time-to-live. A price
        that locked no coupon has no lock to release (a sold-out answer costs one call less)."""
        for hold in held:
            try:
                await self._stock.release(merchant_id, hold, "cancelled")
            except Exception as error:
                log.warning("hold not released; it expires", hold_id=hold, error=repr(error))
        if not coupons_locked:
            return
        try:
            await self._pricing.release_coupons(merchant_id, order_id)
        except Exception as error:
            log.warning("coupons not released; the lock expires", order=order_id, error=repr(error))

    # --- reading --------------------------------------------------------------------------

    async def get(self, merchant_id: str, order_id: str) -> Order:
        order = await self._store.load(merchant_id, order_id)
        if not order.exists:
            raise NotFoundError(f"order {order_id} not found")
        return order

    async def get_for_buyer(self, merchant_id: str, order_id: str, buyer_id: str) -> Order:
        order = await self.get(merchant_id, order_id)
        if order.details.buyer_id != buyer_id:
            raise NotFoundError(f"order {order_id} not found")
        return order

    # --- paying ---------------------------------------------------------------------------

    async def start_payment(self, merchant_id: str, order_id: str, buyer_id: str) -> Payable:
        """Open a payment for the order's total (or hand back the one still open)."""
        order = await self.get_for_buyer(merchant_id, order_id, buyer_id)
        details = order.details
        attempt = 1
        if order.payment is not None and not order.payment.paid:
            found = await self._payments.query(order.payment.payment_id)
            if found.status in (PaymentStatus.PENDING, PaymentStatus.SUCCEEDED):
                return Payable(
                    order_id,
                    order.payment.payment_id,
                    order.payment.pay_url,
                    order.payment.amount,
                    details.currency,
                )
            attempt = int(order.payment.payment_id.rsplit("p", 1)[-1]) + 1
        order.ensure_payable(self._clock())
        payment_id = f"{order_id}p{attempt}"
        created = await self._payments.create_payment(
            PaymentRequest(
                payment_id=payment_id,
                order_id=order_id,
                merchant_id=merchant_id,
                amount_minor=details.totals.total,
                currency=details.currency,
                description=f"order {order_id}",
                expires_at=details.payment_deadline,
                notify_url=self._policy.notify_url,
            )
        )
        started = PaymentStarted(
            order_id,
            payment_id,
            created.provider,
            details.totals.total,
            details.currency,
            created.pay_url,
        )
        await self._save(order, order.start_payment(started, self._clock()))
        return Payable(
            order_id, payment_id, created.pay_url, details.totals.total, details.currency
        )

    async def on_notification(self, headers: Mapping[str, str], body: bytes) -> str:
        """A provider's notification: verified, then applied once; returns what it did."""
        note = self._payments.verify_notification(headers, body, self._clock())
        if note.status is not PaymentStatus.SUCCEEDED:
            return "ignored"
        merchant_id = await self._store.merchant_of(note.order_id)
        if merchant_id is None:
            raise NotFoundError(f"order {note.order_id} not found")
        return await self.settle(
            merchant_id,
            note.order_id,
            note.payment_id,
            note.provider_transaction_id,
            note.amount_minor,
            note.currency,
            note.occurred_at,
        )

    async def settle(
        self,
        merchant_id: str,
        order_id: str,
        payment_id: str,
        transaction_id: str,
        amount: int,
        currency: str,
        paid_at: datetime,
    ) -> str:
        """Apply a successful payment: paid, or refunded when the order cannot take it."""
        order = await self.get(merchant_id, order_id)
        if order.payment is not None and order.payment.paid:
            if order.payment.payment_id == payment_id:
                return "duplicate"
            return await self._refund_payment(order, payment_id, amount, "paid twice")
        if payment_id in order.automatic_refunds:
            return "duplicate"
        if not order.can_take_payment(self._clock()):
            if order.status is OrderStatus.PENDING_PAYMENT:
                order = await self._save(
                    order,
                    order.cancel(CancelReason.TIMEOUT),
                    [TimerChange(PAYMENT_DEADLINE_TIMER, order_id, None)],
                )
            return await self._refund_payment(order, payment_id, amount, "order cancelled")
        events = order.record_payment(
            payment_id, self._payments.name, transaction_id, amount, currency, paid_at
        )
        for hold in order.hold_ids:
            if not await self._stock.confirm(merchant_id, hold):
                order = await self._save(
                    order,
                    order.cancel(CancelReason.TIMEOUT),
                    [TimerChange(PAYMENT_DEADLINE_TIMER, order_id, None)],
                )
                return await self._refund_payment(order, payment_id, amount, "hold expired")
        await self._save(order, events, [TimerChange(PAYMENT_DEADLINE_TIMER, order_id, None)])
        return "paid"

    async def _refund_payment(self, order: Order, payment_id: str, amount: int, why: str) -> str:
        receipt = await self._payments.refund(payment_id, f"{payment_id}r", amount, why)
        await self._save(
            order,
            order.refund_automatically(payment_id, amount, receipt.provider_refund_id, why),
        )
        log.info("payment refunded automatically", order=order.order_id, reason=why)
        return "refunded"

    async def on_payment_deadline(self, merchant_id: str, order_id: str) -> str:
        """The unpaid timeout: ask the provider first (a notification may be late or lost),
        then cancel; the hold and coupons are released by their services on the event."""
        order = await self.get(merchant_id, order_id)
        if order.status is not OrderStatus.PENDING_PAYMENT:
            return "settled"
        if order.payment is not None:
            found = await self._payments.query(order.payment.payment_id)
            if found.status is PaymentStatus.SUCCEEDED:
                return await self.settle(
                    merchant_id,
                    order_id,
                    found.payment_id,
                    found.provider_transaction_id,
                    found.amount_minor,
                    found.currency,
                    found.paid_at or self._clock(),
                )
        await self._save(order, order.cancel(CancelReason.TIMEOUT))
        return "cancelled"

    async def cancel_by_buyer(self, merchant_id: str, order_id: str, buyer_id: str) -> Order:
        order = await self.get_for_buyer(merchant_id, order_id, buyer_id)
        return await self._save(
            order,
            order.cancel(CancelReason.BUYER),
            [TimerChange(PAYMENT_DEADLINE_TIMER, order_id, None)],
        )

    async def on_group_failed(self, merchant_id: str, order_id: str) -> str:
        """A group buy that did not fill: cancel the member's order, refund it if paid."""
        order = await self._store.load(merchant_id, order_id)
        owed = order.payment_owed_back
        if owed is not None:
            return await self._refund_payment(order, owed.payment_id, owed.amount, "group failed")
        if not order.exists or order.status is OrderStatus.CANCELLED:
            return "skipped"
        if order.status not in (OrderStatus.PENDING_PAYMENT, OrderStatus.PAID):
            log.warning("group failed after the order moved on", order=order_id)
            return "skipped"
        payment = order.payment
        order = await self._save(
            order,
            order.cancel(CancelReason.GROUP_FAILED),
            [TimerChange(PAYMENT_DEADLINE_TIMER, order_id, None)],
        )
        if payment is not None and payment.paid:
            return await self._refund_payment(
                order, payment.payment_id, payment.amount, "group failed"
            )
        return "cancelled"

    # --- shipping -------------------------------------------------------------------------

    async def ship(self, merchant_id: str, order_id: str, carrier: str, tracking: str) -> Order:
        order = await self.get(merchant_id, order_id)
        return await self._save(order, order.ship(carrier, tracking, self._clock()))

    async def deliver(self, merchant_id: str, order_id: str) -> Order:
        order = await self.get(merchant_id, order_id)
        events = order.deliver(self._clock(), self._policy.auto_complete_after)
        timers = [
            TimerChange(AUTO_COMPLETE_TIMER, order_id, e.auto_complete_at)
            for e in events
            if isinstance(e, OrderDelivered)
        ]
        return await self._save(order, events, timers)

    async def complete(self, merchant_id: str, order_id: str) -> Order:
        order = await self.get(merchant_id, order_id)
        return await self._save(
            order, order.complete(), [TimerChange(AUTO_COMPLETE_TIMER, order_id, None)]
        )

    async def on_auto_complete(self, merchant_id: str, order_id: str) -> str:
        """Complete a delivered order whose buyer raised nothing in time; an after-sales
        request still open defers it (it completes when that request closes)."""
        order = await self.get(merchant_id, order_id)
        if order.status is not OrderStatus.DELIVERED:
            return "skipped"
        if order.open_return is not None or order.pending_refund is not None:
            return "deferred"
        await self._save(order, order.complete())
        return "completed"

    # --- refunds and returns --------------------------------------------------------------

    async def request_refund(
        self,
        merchant_id: str,
        order_id: str,
        buyer_id: str | None,
        refund_id: str,
        lines: list[tuple[str, int]],
        reason: str,
    ) -> Order:
        """Refund lines of a paid order before it ships: asked for, then paid back at once
        (a durable timer retries the provider if it cannot be reached now)."""
        order = (
            await self.get_for_buyer(merchant_id, order_id, buyer_id)
            if buyer_id is not None
            else await self.get(merchant_id, order_id)
        )
        if not lines:
            lines = [
                (line.sku_id, line.quantity - order.refunded_quantity(line.sku_id))
                for line in order.details.lines
                if line.quantity > order.refunded_quantity(line.sku_id)
            ]
        events = order.request_refund(refund_id, lines, reason)
        order = await self._save(order, events, self._refund_timers(events))
        return await self._pay_back(order, refund_id)

    async def _pay_back(self, order: Order, refund_id: str) -> Order:
        refund = order.refunds.get(refund_id)
        if refund is None or refund.refunded or order.payment is None:
            return order
        try:
            receipt = await self._payments.refund(
                order.payment.payment_id, refund_id, refund.amount, refund.reason or "refund"
            )
        except UnavailableError as error:
            log.warning("refund deferred to its timer", refund=refund_id, error=str(error))
            return order
        order = await self._save(
            order,
            order.record_refund(refund_id, receipt.provider_refund_id),
            [TimerChange(REFUND_TIMER, refund_id, None)],
        )
        return await self._complete_if_due(order)

    async def on_refund_timer(self, merchant_id: str, order_id: str, refund_id: str) -> str:
        order = await self.get(merchant_id, order_id)
        refund = order.refunds.get(refund_id)
        if refund is None or refund.refunded:
            return "settled"
        receipt = await self._payments.refund(
            order.payment.payment_id if order.payment else "",
            refund_id,
            refund.amount,
            refund.reason or "refund",
        )
        order = await self._save(order, order.record_refund(refund_id, receipt.provider_refund_id))
        await self._complete_if_due(order)
        return "refunded"

    async def request_return(
        self,
        merchant_id: str,
        order_id: str,
        buyer_id: str,
        return_id: str,
        kind: ReturnKind,
        lines: list[tuple[str, int]],
        reason: str,
    ) -> Order:
        order = await self.get_for_buyer(merchant_id, order_id, buyer_id)
        return await self._save(order, order.request_return(return_id, kind, lines, reason))

    async def decide_return(
        self, merchant_id: str, order_id: str, return_id: str, approve: bool, reason: str
    ) -> Order:
        order = await self.get(merchant_id, order_id)
        if approve:
            return await self._save(order, order.approve_return(return_id))
        order = await self._save(order, order.reject_return(return_id, reason))
        return await self._complete_if_due(order)

    async def receive_return(self, merchant_id: str, order_id: str, return_id: str) -> Order:
        order = await self.get(merchant_id, order_id)
        events = order.receive_return(return_id)
        order = await self._save(order, events, self._refund_timers(events))
        if return_id in order.refunds:
            return await self._pay_back(order, return_id)
        return await self._complete_if_due(order)

    def _refund_timers(self, events: list[OrderEvent]) -> list[TimerChange]:
        due = self._clock() + REFUND_RETRY_DELAY
        return [
            TimerChange(REFUND_TIMER, e.refund_id, due)
            for e in events
            if isinstance(e, RefundRequested)
        ]

    async def _complete_if_due(self, order: Order) -> Order:
        """An order whose after-sales closed after its auto-complete time completes now."""
        if (
            order.status is OrderStatus.DELIVERED
            and order.auto_complete_at is not None
            and order.auto_complete_at <= self._clock()
            and order.open_return is None
            and order.pending_refund is None
        ):
            return await self._save(order, order.complete())
        return order

    # --- saving ---------------------------------------------------------------------------

    async def _save(
        self, order: Order, events: list[OrderEvent], timers: list[TimerChange] | None = None
    ) -> Order:
        if not events:
            return order
        try:
            return await self._store.save(order, events, timers or [])
        except ConcurrencyError as error:
            raise OrderChangedError(
                f"order {order.order_id} changed meanwhile; retry the request"
            ) from error


class OrderChangedError(ConcurrencyError):
    """Another request changed the order between this one's read and write."""


class CheckoutInProgressError(ConcurrencyError):
    pass


class RecordedCheckoutError(KitError):
    """The refusal a checkout got, given again to a retry with the same key."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.http_status = status  # type: ignore[assignment]
        self.error = error
