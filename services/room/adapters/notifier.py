"""Notification channels for reminders: a signed webhook (the built-in channel: the
messaging gateway of the merchant's app or mini-program receives it), or the log when no
webhook is configured (development).

The webhook is a POST of JSON with ``Idempotency-Key: <reminder id>`` and
``X-Livecommerce-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` with the
shared secret, so the receiver can check origin and freshness and drop repeats.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from services.kit.logging import get_logger
from services.room.domain.reminders import Reminder

log = get_logger(__name__)

SIGNATURE_HEADER = "X-Livecommerce-Signature"


def sign(secret: str, body: bytes, at: int) -> str:
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def reminder_body(reminder: Reminder) -> bytes:
    return json.dumps(
        {
            "reminder_id": reminder.reminder_id,
            "merchant_id": reminder.merchant_id,
            "room_id": reminder.room_id,
            "viewer_id": reminder.viewer_id,
            "kind": reminder.kind.value,
            "host_id": reminder.host_id,
            "title": reminder.title,
            "starts_at": reminder.starts_at.isoformat(),
        },
        ensure_ascii=False,
        sort_keys=True,
    ).encode()


class WebhookNotifier:
    channel = "webhook"

    def __init__(self, client: httpx.AsyncClient, *, url: str, secret: str) -> None:
        self._client = client
        self._url = url
        self._secret = secret

    async def send(self, reminder: Reminder) -> None:
        body = reminder_body(reminder)
        response = await self._client.post(
            self._url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": reminder.reminder_id,
                SIGNATURE_HEADER: sign(self._secret, body, int(time.time())),
            },
        )
        response.raise_for_status()


class LogNotifier:
    channel = "log"

    async def send(self, reminder: Reminder) -> None:
        log.info("reminder", **json.loads(reminder_body(reminder)))
