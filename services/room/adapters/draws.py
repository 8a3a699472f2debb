"""Lucky draws in Postgres: DrawHeld and the draw's row (with its candidate list, for
audit) in one transaction; the draw id is unique per room."""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg

from services.kit.errors import AlreadyExistsError, ConcurrencyError, NotFoundError
from services.kit.eventstore import EventStore, StreamAppend
from services.room.adapters import codec
from services.room.domain.draws import DrawHeld, DrawPool, draw_stream_id


class PostgresDraws:
    def __init__(self, pool: asyncpg.Pool, store: EventStore) -> None:
        self._pool = pool
        self._store = store

    async def record(self, merchant_id: str, event: DrawHeld, candidates: Sequence[str]) -> None:
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO draws (merchant_id, room_id, draw_id, prize, prizes, pool,"
                    " keyword, seed, candidates_sha256, candidates, winners, held_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    merchant_id,
                    event.room_id,
                    event.draw_id,
                    event.prize,
                    event.prizes,
                    event.pool.value,
                    event.keyword,
                    event.seed,
                    event.candidates_sha256,
                    json.dumps(list(candidates)),
                    json.dumps(list(event.winners)),
                    event.held_at,
                )
                await self._store.append(
                    [
                        StreamAppend(
                            stream_id=draw_stream_id(merchant_id, event.room_id, event.draw_id),
                            aggregate_type=codec.AGGREGATE_DRAW,
                            merchant_id=merchant_id,
                            expected_version=0,
                            events=[codec.encode(event, event.held_at)],
                        )
                    ],
                    conn=conn,
                    savepoint=False,
                )
        except (asyncpg.UniqueViolationError, ConcurrencyError) as error:
            raise AlreadyExistsError(f"draw {event.draw_id} was already held") from error

    async def get(self, merchant_id: str, room_id: str, draw_id: str) -> tuple[DrawHeld, list[str]]:
        row = await self._pool.fetchrow(
            "SELECT * FROM draws WHERE merchant_id = $1 AND room_id = $2 AND draw_id = $3",
            merchant_id,
            room_id,
            draw_id,
        )
        if row is None:
            raise NotFoundError(f"draw {draw_id} not found")
        candidates: list[str] = json.loads(row["candidates"])
        return (
            DrawHeld(
                room_id=row["room_id"],
                draw_id=row["draw_id"],
                prize=row["prize"],
                prizes=row["prizes"],
                pool=DrawPool(row["pool"]),
                keyword=row["keyword"],
                seed=row["seed"],
                candidates_sha256=row["candidates_sha256"],
                candidate_count=len(candidates),
                winners=tuple(json.loads(row["winners"])),
                held_at=row["held_at"],
            ),
            candidates,
        )
