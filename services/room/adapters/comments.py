"""Comments: durable in Postgres (events plus the ``comments`` table, group-committed),
recent ones and slow-mode turns in Redis."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from redis.asyncio import Redis

from services.kit.db import Connection
from services.kit.eventstore import PostgresEventStore, StreamAppend
from services.kit.group_commit import GroupCommit
from services.kit.lua import unavailable_on_redis_errors
from services.room.adapters import codec
from services.room.adapters.presence import room_key
from services.room.application.ports import StoredComment
from services.room.domain.comments import (
    CommentDeleted,
    CommentPosted,
    comment_stream_id,
    normalise,
)
from services.room.domain.room import RoomNotFoundError


class CommentNotFoundError(RoomNotFoundError):
    pass


@dataclass(frozen=True)
class _Posted:
    merchant_id: str
    event: CommentPosted


def _append(item: _Posted) -> StreamAppend:
    event = item.event
    return StreamAppend(
        stream_id=comment_stream_id(item.merchant_id, event.room_id, event.comment_id),
        aggregate_type=codec.AGGREGATE_COMMENT,
        merchant_id=item.merchant_id,
        expected_version=0,
        events=[codec.encode(event, event.posted_at)],
    )


async def _insert_rows(conn: Connection, items: Sequence[_Posted]) -> None:
    await conn.executemany(
        "INSERT INTO comments (merchant_id, room_id, comment_id, viewer_id, body, folded,"
        " posted_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            (
                i.merchant_id,
                i.event.room_id,
                i.event.comment_id,
                i.event.viewer_id,
                i.event.text,
                normalise(i.event.text),
                i.event.posted_at,
            )
            for i in items
        ],
    )


def _like_pattern(keyword: str) -> str:
    escaped = keyword.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class PostgresComments:
    def __init__(self, pool: asyncpg.Pool, store: PostgresEventStore, *, max_batch: int) -> None:
        self._pool = pool
        self._store = store
        self._commit: GroupCommit[_Posted] = GroupCommit(
            pool,
            store,
            append_of=_append,
            write=_insert_rows,
            max_batch=max_batch,
            name="room.comments",
        )

    async def post(self, merchant_id: str, event: CommentPosted) -> None:
        await self._commit.commit(_Posted(merchant_id, event))

    async def delete(
        self, merchant_id: str, room_id: str, comment_id: str, deleted_by: str
    ) -> StoredComment:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT viewer_id, body, posted_at, deleted FROM comments"
                " WHERE merchant_id = $1 AND room_id = $2 AND comment_id = $3 FOR UPDATE",
                merchant_id,
                room_id,
                comment_id,
            )
            if row is None:
                raise CommentNotFoundError(f"comment {comment_id} not found")
            if not row["deleted"]:
                await conn.execute(
                    "UPDATE comments SET deleted = true"
                    " WHERE merchant_id = $1 AND room_id = $2 AND comment_id = $3",
                    merchant_id,
                    room_id,
                    comment_id,
                )
                event = CommentDeleted(room_id, comment_id, deleted_by)
                await self._store.append(
                    [
                        StreamAppend(
                            stream_id=comment_stream_id(merchant_id, room_id, comment_id),
                            aggregate_type=codec.AGGREGATE_COMMENT,
                            merchant_id=merchant_id,
                            expected_version=1,
                            events=[codec.encode(event)],
                        )
                    ],
                    conn=conn,
                    savepoint=False,
                )
        return StoredComment(comment_id, row["viewer_id"], row["body"], row["posted_at"])

    async def commenters(self, merchant_id: str, room_id: str, keyword: str) -> list[str]:
        rows = await self._pool.fetch(
            "SELECT DISTINCT viewer_id FROM comments WHERE merchant_id = $1 AND room_id = $2"
            " AND NOT deleted AND folded LIKE $3",
            merchant_id,
            room_id,
            _like_pattern(normalise(keyword)),
        )
        return [row["viewer_id"] for row in rows]


def _encode(comment: StoredComment) -> str:
    return json.dumps(
        {
            "id": comment.comment_id,
            "viewer_id": comment.viewer_id,
            "text": comment.text,
            "posted_at": comment.posted_at.isoformat(),
        },
        ensure_ascii=False,
    )


def _decode(raw: str) -> StoredComment:
    data = json.loads(raw)
    return StoredComment(
        data["id"], data["viewer_id"], data["text"], datetime.fromisoformat(data["posted_at"])
    )


class RedisCommentFeed:
    """``comments`` is a list, newest first, trimmed to ``keep``; ``turn:<viewer>`` a key
    that lives for the slow-mode interval (SET NX: one comment per interval, atomically)."""

    def __init__(self, redis: Redis, *, namespace: str, keep: int) -> None:
        self._redis = redis
        self._namespace = namespace
        self._keep = keep

    @unavailable_on_redis_errors("comments")
    async def add(self, merchant_id: str, room_id: str, comment: StoredComment) -> None:
        key = room_key(self._namespace, merchant_id, room_id, "comments")
        pipe = self._redis.pipeline(transaction=False)
        pipe.lpush(key, _encode(comment))
        pipe.ltrim(key, 0, self._keep - 1)
        await pipe.execute()

    @unavailable_on_redis_errors("comments")
    async def recent(self, merchant_id: str, room_id: str, limit: int) -> list[StoredComment]:
        key = room_key(self._namespace, merchant_id, room_id, "comments")
        raw = await self._redis.lrange(key, 0, limit - 1)
        return [_decode(str(r)) for r in raw]

    @unavailable_on_redis_errors("comments")
    async def remove(self, merchant_id: str, room_id: str, comment_id: str) -> None:
        key = room_key(self._namespace, merchant_id, room_id, "comments")
        raw = await self._redis.lrange(key, 0, -1)
        for entry in raw:
            if json.loads(entry)["id"] == comment_id:
                await self._redis.lrem(key, 0, str(entry))

    @unavailable_on_redis_errors("comments")
    async def claim_turn(
        self, merchant_id: str, room_id: str, viewer_id: str, interval_seconds: int
    ) -> bool:
        if interval_seconds <= 0:
            return True
        key = room_key(self._namespace, merchant_id, room_id, f"turn:{viewer_id}")
        return bool(await self._redis.set(key, "1", nx=True, ex=interval_seconds))
