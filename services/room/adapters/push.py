"""Real-time push to a room's clients, across replicas.

Any process publishes a room's messages on the Redis channel ``<prefix>:<merchant>:<room>``
(:class:`RedisPush`). Every API replica runs one :class:`PushHub`: a single pattern
subscription that hands each message to the clients of that room connected to this replica.
A client has a bounded queue; a client whose queue is full (too slow to read) is dropped
rather than let it hold memory or delay the others: it reconnects and reads the state anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter, Gauge
from redis.asyncio import Redis

from services.kit.logging import get_logger
from services.room.application.ports import PushMessage

log = get_logger(__name__)

PUSH_CLIENTS = Gauge("livecommerce_room_push_clients", "Push clients connected to this replica")
PUSH_DROPPED = Counter(
    "livecommerce_room_push_dropped_total", "Push clients dropped for reading too slowly"
)
PUSH_DELIVERED = Counter(
    "livecommerce_room_push_delivered_total", "Push messages queued to clients"
)


def encode_message(message: PushMessage) -> str:
    return json.dumps(
        {
            "type": message.kind.value,
            "room_id": message.room_id,
            "at": message.at.isoformat(),
            "data": dict(message.data),
            **({"to": message.to} if message.to else {}),
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


class RedisPush:
    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    def channel(self, merchant_id: str, room_id: str) -> str:
        return f"{self._prefix}:{merchant_id}:{room_id}"

    async def publish(self, merchant_id: str, messages: Sequence[PushMessage]) -> None:
        """Best effort: a Redis hiccup loses a push, never the command that caused it."""
        if not messages:
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for message in messages:
                pipe.publish(self.channel(merchant_id, message.room_id), encode_message(message))
            await pipe.execute()
        except Exception as error:
            log.warning("push not published", error=repr(error), count=len(messages))


class PushClient:
    """One connected client: what it may receive, and its bounded queue."""

    def __init__(self, viewer_id: str, queue_size: int) -> None:
        self.viewer_id = viewer_id
        self.queue: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self.dropped = asyncio.Event()

    def offer(self, raw: str, to: str) -> None:
        if self.dropped.is_set() or (to and to != self.viewer_id):
            return
        try:
            self.queue.put_nowait(raw)
            PUSH_DELIVERED.inc()
        except asyncio.QueueFull:
            self.dropped.set()
            PUSH_DROPPED.inc()


class PushHub:
    def __init__(self, redis: Redis, *, prefix: str, queue_size: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._queue_size = queue_size
        self._rooms: dict[str, set[PushClient]] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def connect(self, merchant_id: str, room_id: str, viewer_id: str) -> PushClient:
        client = PushClient(viewer_id, self._queue_size)
        self._rooms.setdefault(f"{merchant_id}:{room_id}", set()).add(client)
        PUSH_CLIENTS.inc()
        return client

    def disconnect(self, merchant_id: str, room_id: str, client: PushClient) -> None:
        key = f"{merchant_id}:{room_id}"
        clients = self._rooms.get(key)
        if clients is not None and client in clients:
            clients.discard(client)
            PUSH_CLIENTS.dec()
            if not clients:
                del self._rooms[key]

    def clients(self, merchant_id: str, room_id: str) -> int:
        return len(self._rooms.get(f"{merchant_id}:{room_id}", ()))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen())
        await asyncio.wait_for(self._subscribed.wait(), timeout=10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        """Re-subscribes after a Redis outage (messages sent meanwhile are lost: push is
        best effort, clients read the state when they connect)."""
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(f"{self._prefix}:*")
                self._subscribed.set()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._dispatch(message)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("push subscription lost; resubscribing", error=repr(error))
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py

    def _dispatch(self, message: dict[str, Any]) -> None:
        channel, raw = message.get("channel"), message.get("data")
        if not isinstance(channel, str) or not isinstance(raw, str):
            return
        clients = self._rooms.get(channel[len(self._prefix) + 1 :])
        if not clients:
            return
        to = ""
        if '"to":' in raw:
            to = str(json.loads(raw).get("to", ""))
        for client in list(clients):
            client.offer(raw, to)
