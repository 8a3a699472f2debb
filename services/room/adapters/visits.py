"""Visit events (ViewerJoined, ViewerLeft), group-committed: a join storm costs one
transaction per batch, not per viewer."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from services.kit.eventstore import PostgresEventStore, StreamAppend
from services.kit.group_commit import GroupCommit
from services.room.adapters import codec
from services.room.domain.viewers import ViewerJoined, ViewerLeft, visit_stream_id


@dataclass(frozen=True)
class _VisitEvent:
    merchant_id: str
    event: ViewerJoined | ViewerLeft


def _append(item: _VisitEvent) -> StreamAppend:
    event = item.event
    if isinstance(event, ViewerJoined):
        version, at = 0, event.joined_at
    else:
        version, at = 1, event.left_at
    return StreamAppend(
        stream_id=visit_stream_id(item.merchant_id, event.room_id, event.visit_id),
        aggregate_type=codec.AGGREGATE_VISIT,
        merchant_id=item.merchant_id,
        expected_version=version,
        events=[codec.encode(event, at)],
    )


class GroupCommittedVisits:
    def __init__(self, pool: asyncpg.Pool, store: PostgresEventStore, *, max_batch: int) -> None:
        self._commit: GroupCommit[_VisitEvent] = GroupCommit(
            pool, store, append_of=_append, max_batch=max_batch, name="room.visits"
        )

    async def joined(self, merchant_id: str, event: ViewerJoined) -> None:
        await self._commit.commit(_VisitEvent(merchant_id, event))

    async def left(self, merchant_id: str, event: ViewerLeft) -> None:
        await self._commit.commit(_VisitEvent(merchant_id, event))
