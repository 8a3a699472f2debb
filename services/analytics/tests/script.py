"""A scripted live stream: real protobuf events of every producing service in their
envelopes, as the relays publish them, with times relative to the stream's start ``t0``.

Room r1 (host h1) is live for 300 s. Six visits of five viewers (v1 twice), two pins, a
flash sale, a coupon drop, a draw, four comments, reminders to two viewers, four orders
(one cancelled, three paid, one partly refunded), referral attributions, stock. Room r0 of
the day before gives v3 a purchase history (a returning buyer). The figures every test
expects from it are worked out by hand in ``EXPECTED`` and the tests' comments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from google.protobuf.message import Message

from livecommerce.inventory.v1 import events_pb2 as inventory
from livecommerce.kit.v1.envelope_pb2 import Envelope
from livecommerce.order.v1 import events_pb2 as order
from livecommerce.promotion.v1 import events_pb2 as promotion
from livecommerce.referral.v1 import events_pb2 as referral
from livecommerce.room.v1 import events_pb2 as room
from services.kit.scaffolding import envelope_of
from services.kit.wire import timestamp

TOPICS = {
    "room": "room.events",
    "order": "order.events",
    "promotion": "promotion.events",
    "inventory": "inventory.events",
    "referral": "referral.events",
}


@dataclass
class Script:
    merchant: str
    t0: datetime
    envelopes: list[tuple[str, Envelope]] = field(default_factory=list)
    """(producer, envelope) in publication order."""
    _versions: dict[str, int] = field(default_factory=dict)

    def at(self, seconds: float) -> datetime:
        return self.t0 + timedelta(seconds=seconds)

    def emit(self, producer: str, stream: str, message: Message, seconds: float) -> None:
        stream_id = f"{stream.split(':', 1)[0]}:{self.merchant}:{stream.split(':', 1)[1]}"
        self._versions[stream_id] = self._versions.get(stream_id, 0) + 1
        envelope = envelope_of(
            message,
            stream_id=stream_id,
            version=self._versions[stream_id],
            aggregate_type=stream.split(":", 1)[0],
            merchant_id=self.merchant,
            producer=producer,
            occurred_at=self.at(seconds),
        )
        self.envelopes.append((producer, envelope))

    def join(
        self,
        visit: str,
        viewer: str,
        seconds: float,
        channel: str,
        entry: str = "",
        code: str = "",
        room_id: str = "r1",
    ) -> None:
        message = room.ViewerJoined(
            room_id=room_id,
            viewer_id=viewer,
            channel=channel,
            share_code=code,
            entry=entry,
            joined_at=timestamp(self.at(seconds)),
            visit_id=visit,
        )
        self.emit("room", f"visit:{room_id}:{visit}", message, seconds)

    def leave(
        self,
        visit: str,
        viewer: str,
        seconds: float,
        watched: int,
        reason: str = "left",
        room_id: str = "r1",
    ) -> None:
        message = room.ViewerLeft(
            room_id=room_id,
            viewer_id=viewer,
            watched_seconds=watched,
            left_at=timestamp(self.at(seconds)),
            visit_id=visit,
            reason=reason,
        )
        self.emit("room", f"visit:{room_id}:{visit}", message, seconds)

    def place(
        self,
        order_id: str,
        buyer: str,
        seconds: float,
        channel: str,
        lines: list[tuple[str, int, int]],
        code: str = "",
        room_id: str = "r1",
    ) -> None:
        message = order.OrderPlaced(
            order_id=order_id,
            buyer_id=buyer,
            room_id=room_id,
            channel=channel,
            currency="CNY",
            lines=[order.OrderLine(sku_id=s, quantity=q, total_minor=t) for s, q, t in lines],
            share_code=code,
            subtotal_minor=sum(t for _, _, t in lines),
            total_minor=sum(t for _, _, t in lines),
        )
        self.emit("order", f"order:{order_id}", message, seconds)

    def pay(
        self, order_id: str, buyer: str, seconds: float, amount: int, room_id: str = "r1"
    ) -> None:
        message = order.OrderPaid(
            order_id=order_id,
            buyer_id=buyer,
            payment_id=f"pay-{order_id}",
            provider="sandbox",
            amount_minor=amount,
            currency="CNY",
            paid_at=timestamp(self.at(seconds)),
            room_id=room_id,
        )
        self.emit("order", f"order:{order_id}", message, seconds)

    def stock(self, sku: str, message: Message, seconds: float) -> None:
        self.emit("inventory", f"sku:{sku}", message, seconds)


def scripted_stream(merchant: str, t0: datetime) -> Script:
    s = Script(merchant, t0)
    day = -24 * 3600
    # The day before: room r0, where v3 watched and bought (so is a returning buyer).
    s.emit(
        "room",
        "room:r0",
        room.RoomStarted(room_id="r0", host_id="h1", started_at=timestamp(s.at(day))),
        day,
    )
    s.join("r0-v3", "v3", day + 10, "app", room_id="r0")
    s.place("o0", "v3", day + 50, "app", [("SKU-B", 1, 3000)], room_id="r0")
    s.pay("o0", "v3", day + 60, 3000, room_id="r0")
    s.leave("r0-v3", "v3", day + 100, 90, room_id="r0")
    s.emit(
        "room",
        "room:r0",
        room.RoomEnded(room_id="r0", ended_at=timestamp(s.at(day + 600))),
        day + 600,
    )
    s.emit(
        "referral",
        "programme:x",
        referral.ProgrammeConfigured(
            levels=1, version=1, sku_categories={"SKU-A": "lipstick", "SKU-B": "skincare"}
        ),
        day,
    )

    # Before the start: schedule, stock, the flash sale's campaign and allocation.
    s.emit(
        "room",
        "room:r1",
        room.RoomScheduled(
            room_id="r1",
            host_id="h1",
            title="Autumn lipstick live",
            starts_at=timestamp(s.at(0)),
            ends_at=timestamp(s.at(3600)),
            channels=["mini_program", "h5", "app"],
        ),
        -600,
    )
    s.stock("SKU-A", inventory.StockReceived(sku_id="SKU-A", quantity=100, on_hand_after=100), -500)
    s.stock("SKU-B", inventory.StockReceived(sku_id="SKU-B", quantity=50, on_hand_after=50), -500)
    s.emit(
        "promotion",
        "campaign:c1",
        promotion.CampaignScheduled(
            campaign_id="c1",
            sku_id="SKU-A",
            room_id="r1",
            quantity=20,
            currency="CNY",
            starts_at=timestamp(s.at(65)),
            ends_at=timestamp(s.at(1800)),
        ),
        -400,
    )
    s.stock(
        "SKU-A",
        inventory.StockAllocatedToSale(sku_id="SKU-A", sale_id="c1", quantity=20, on_hand_after=80),
        -400,
    )
    s.emit(
        "inventory",
        "sale:c1",
        inventory.FlashSaleScheduled(sale_id="c1", sku_id="SKU-A", allocated=20),
        -400,
    )
    for viewer, kind in (("v5", "lead"), ("v1", "live"), ("v5", "live")):
        s.emit(
            "room",
            f"reminder:r1:{viewer}:{kind}",
            room.ReminderSent(
                room_id="r1",
                viewer_id=viewer,
                kind=kind,
                channel="log",
                sent_at=timestamp(s.at(-60)),
            ),
            -60,
        )

    s.emit(
        "room",
        "room:r1",
        room.RoomStarted(
            room_id="r1", host_id="h1", started_at=timestamp(s.at(0)), ends_at=timestamp(s.at(3600))
        ),
        0,
    )
    s.join("r1-v1a", "v1", 10, "mini_program")
    s.emit(
        "room",
        "comment:r1:c-1",
        room.CommentPosted(
            room_id="r1", comment_id="c-1", viewer_id="v1", text="hi", posted_at=timestamp(s.at(15))
        ),
        15,
    )
    s.join("r1-v2", "v2", 20, "h5", "share_link", "code-s1")
    s.emit(
        "referral",
        "visit:e-v2",
        referral.ViewAttributed(
            viewer_id="v2",
            sharer_id="s1",
            code="code-s1",
            room_id="r1",
            entry="share_link",
            channel="h5",
            joined_at=timestamp(s.at(20)),
        ),
        20,
    )
    s.emit(
        "referral",
        "visit:e-v2",
        referral.InviteeBound(invitee_id="v2", inviter_id="s1", code="code-s1"),
        20,
    )
    s.join("r1-v3", "v3", 30, "app")
    s.emit("room", "room:r1", room.ProductPinned(room_id="r1", sku_id="SKU-A"), 60)
    s.emit(
        "promotion",
        "campaign:c1",
        promotion.CampaignStarted(
            campaign_id="c1",
            sku_id="SKU-A",
            room_id="r1",
            started_at=timestamp(s.at(65)),
            ends_at=timestamp(s.at(1800)),
        ),
        65,
    )
    s.emit(
        "room",
        "comment:r1:c-2",
        room.CommentPosted(
            room_id="r1",
            comment_id="c-2",
            viewer_id="v2",
            text="want",
            posted_at=timestamp(s.at(70)),
        ),
        70,
    )
    s.place("o1", "v2", 70, "h5", [("SKU-A", 1, 9900)], code="code-s1")
    s.emit(
        "inventory",
        "hold:o1",
        inventory.StockReserved(
            hold_id="o1", sale_id="c1", sku_id="SKU-A", user_id="v2", quantity=1
        ),
        70,
    )
    s.emit(
        "referral",
        "referral:o1",
        referral.OrderAttributed(
            order_id="o1",
            buyer_id="v2",
            sharer_id="s1",
            code="code-s1",
            room_id="r1",
            source="order",
            total_minor=9900,
        ),
        70,
    )
    s.emit(
        "room",
        "comment:r1:c-3",
        room.CommentPosted(
            room_id="r1",
            comment_id="c-3",
            viewer_id="v3",
            text="me too",
            posted_at=timestamp(s.at(75)),
        ),
        75,
    )
    s.pay("o1", "v2", 80, 9900)
    s.place("o2", "v3", 80, "app", [("SKU-A", 2, 19800), ("SKU-B", 1, 5000)])
    s.emit(
        "inventory",
        "hold:o2",
        inventory.StockReserved(
            hold_id="o2", sale_id="c1", sku_id="SKU-A", user_id="v3", quantity=2
        ),
        80,
    )
    s.leave("r1-v1a", "v1", 90, 80)
    s.emit(
        "promotion",
        "coupon-template:tpl1",
        promotion.CouponTemplateCreated(
            template_id="tpl1",
            kind="fixed_amount",
            room_id="r1",
            quota=100,
            claim_starts_at=timestamp(s.at(100)),
        ),
        95,
    )
    s.emit(
        "room",
        "comment:r1:c-4",
        room.CommentPosted(
            room_id="r1",
            comment_id="c-4",
            viewer_id="v2",
            text="price?",
            posted_at=timestamp(s.at(125)),
        ),
        125,
    )
    s.join("r1-v1b", "v1", 130, "mini_program")
    s.join("r1-v4", "v4", 140, "mini_program", "invitation_card", "code-s9")
    s.place("o3", "v4", 145, "mini_program", [("SKU-B", 1, 5000)])
    s.pay("o2", "v3", 150, 24800)
    s.emit("room", "room:r1", room.ProductUnpinned(room_id="r1", sku_id="SKU-A"), 150)
    s.join("r1-v6", "v6", 160, "h5")
    s.emit(
        "order",
        "order:o3",
        order.OrderCancelled(order_id="o3", buyer_id="v4", reason="timeout", room_id="r1"),
        170,
    )
    s.leave("r1-v6", "v6", 190, 30)
    s.emit("room", "room:r1", room.ProductPinned(room_id="r1", sku_id="SKU-B"), 200)
    s.place("o4", "v1", 210, "mini_program", [("SKU-B", 2, 10000)])
    s.pay("o4", "v1", 215, 10000)
    s.emit(
        "room",
        "draw:r1:d1",
        room.DrawHeld(
            room_id="r1",
            draw_id="d1",
            prize="lipstick",
            prizes=2,
            pool="present",
            winners=["v1", "v2"],
            held_at=timestamp(s.at(220)),
        ),
        220,
    )
    s.emit(
        "order",
        "order:o4",
        order.OrderRefunded(
            order_id="o4",
            refund_id="rf1",
            buyer_id="v1",
            lines=[order.RefundLine(sku_id="SKU-B", quantity=1, amount_minor=5000)],
            amount_minor=5000,
            currency="CNY",
            before_shipping=True,
        ),
        230,
    )
    s.leave("r1-v2", "v2", 240, 220)
    s.emit(
        "room",
        "room:r1",
        room.RoomEnded(
            room_id="r1",
            ended_at=timestamp(s.at(300)),
            peak_viewers=5,
            unique_viewers=5,
            watched_seconds=930,
        ),
        300,
    )
    s.leave("r1-v1b", "v1", 300, 170, "room_ended")
    s.leave("r1-v3", "v3", 300, 270, "room_ended")
    s.leave("r1-v4", "v4", 300, 160, "room_ended")
    return s
