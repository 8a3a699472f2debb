"""Push fan-out in one process (targeted messages, a slow client dropped, not the others),
room events as push messages, signed reminder webhooks and derived stream URLs."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import httpx
import pytest

from services.room.adapters.notifier import SIGNATURE_HEADER, WebhookNotifier, sign
from services.room.adapters.push import PushHub, encode_message
from services.room.adapters.streaming import DerivedStreamUrls
from services.room.application.ports import PushKind, PushMessage
from services.room.application.push import room_messages
from services.room.domain.reminders import Reminder, ReminderKind
from services.room.domain.room import (
    BannedWordsChanged,
    ProductAddedToLineup,
    ProductPinned,
    Room,
    RoomState,
    UserMuted,
)

NOW = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


def hub(queue_size: int = 4) -> PushHub:
    return PushHub(redis=None, prefix="push", queue_size=queue_size)  # type: ignore[arg-type]


def deliver(target: PushHub, message: PushMessage, merchant: str = "m1") -> None:
    target._dispatch(
        {"channel": f"push:{merchant}:{message.room_id}", "data": encode_message(message)}
    )


def test_a_room_message_reaches_every_client_of_that_room_only() -> None:
    fan_out = hub()
    a = fan_out.connect("m1", "r1", "a")
    b = fan_out.connect("m1", "r1", "b")
    elsewhere = fan_out.connect("m1", "r2", "c")
    deliver(fan_out, PushMessage(PushKind.PRODUCT_PINNED, "r1", NOW, {"sku_id": "S"}))
    assert a.queue.qsize() == b.queue.qsize() == 1
    assert elsewhere.queue.empty()
    assert json.loads(a.queue.get_nowait())["data"] == {"sku_id": "S"}


def test_a_message_for_one_viewer_reaches_only_that_viewer() -> None:
    fan_out = hub()
    buyer = fan_out.connect("m1", "r1", "buyer")
    other = fan_out.connect("m1", "r1", "other")
    deliver(fan_out, PushMessage(PushKind.CHECKOUT_LINK, "r1", NOW, {"url": "u"}, to="buyer"))
    assert (buyer.queue.qsize(), other.queue.qsize()) == (1, 0)


def test_a_client_that_does_not_read_is_dropped_and_the_others_keep_receiving() -> None:
    fan_out = hub(queue_size=3)
    slow = fan_out.connect("m1", "r1", "slow")
    fast = fan_out.connect("m1", "r1", "fast")
    for i in range(5):
        deliver(fan_out, PushMessage(PushKind.COMMENT, "r1", NOW, {"n": i}))
        while not fast.queue.empty():
            fast.queue.get_nowait()
    assert slow.dropped.is_set()
    assert not fast.dropped.is_set()
    fan_out.disconnect("m1", "r1", slow)
    fan_out.disconnect("m1", "r1", fast)
    assert fan_out.clients("m1", "r1") == 0


def test_room_events_become_messages_and_banned_words_stay_private() -> None:
    room = Room("m1", "r1", state=RoomState.LIVE).apply(ProductAddedToLineup("r1", "A", 0))
    messages = room_messages(
        room,
        [
            ProductAddedToLineup("r1", "A", 0),
            ProductPinned("r1", "A"),
            UserMuted("r1", "troll", "spam"),
            BannedWordsChanged("r1", ("secret",)),
        ],
        NOW,
    )
    assert [(m.kind, m.to) for m in messages] == [
        (PushKind.LINEUP_CHANGED, ""),
        (PushKind.PRODUCT_PINNED, ""),
        (PushKind.MODERATION, "troll"),
    ]
    assert "secret" not in json.dumps([encode_message(m) for m in messages])


async def test_the_reminder_webhook_is_signed_and_keyed_for_idempotency() -> None:
    seen: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202)

    reminder = Reminder("m1", "r1", "fan", ReminderKind.LEAD, "h1", "Show", NOW)
    async with httpx.AsyncClient(transport=httpx.MockTransport(gateway)) as client:
        notifier = WebhookNotifier(client, url="https://gateway.example/remind", secret="k")
        await notifier.send(reminder)
    [request] = seen
    assert request.headers["Idempotency-Key"] == "m1:r1:fan:lead"
    stamp, mac = request.headers[SIGNATURE_HEADER].split(",")
    at = stamp.removeprefix("t=")
    expected = hmac.new(b"k", f"{at}.".encode() + request.content, hashlib.sha256).hexdigest()
    assert mac == f"v1={expected}"
    assert sign("k", request.content, int(at)) == request.headers[SIGNATURE_HEADER]
    assert json.loads(request.content)["viewer_id"] == "fan"


async def test_a_refused_webhook_is_an_error_so_the_reminder_is_retried() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(503))
    reminder = Reminder("m1", "r1", "fan", ReminderKind.LIVE, "h1", "Show", NOW)
    async with httpx.AsyncClient(transport=transport) as client:
        notifier = WebhookNotifier(client, url="https://gateway.example/remind", secret="k")
        with pytest.raises(httpx.HTTPStatusError, match="503"):
            await notifier.send(reminder)


def test_stream_urls_are_stable_per_room_and_the_push_key_needs_the_secret() -> None:
    provider = DerivedStreamUrls(
        push_base="rtmp://push.example/live/", play_base="https://play.example/live", key_secret="s"
    )
    first, again = provider.urls("m1", "r1"), provider.urls("m1", "r1")
    other = provider.urls("m1", "r2")
    assert first == again
    assert first.push_url != other.push_url
    assert first.push_url.startswith("rtmp://push.example/live/m1-")
    assert first.play_urls["flv"].endswith(".flv")
    rekeyed = DerivedStreamUrls(
        push_base="rtmp://push.example/live", play_base="https://play.example/live", key_secret="t"
    ).urls("m1", "r1")
    assert rekeyed.play_urls == first.play_urls
    assert rekeyed.push_url != first.push_url
