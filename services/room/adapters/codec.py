"""Mapping between room domain events and their protobuf integration events."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from google.protobuf.message import Message

from livecommerce.room.v1 import events_pb2 as pb
from services.kit.eventstore import NewEvent, StoredEvent
from services.kit.wire import moment, timestamp
from services.room.domain import comments as c
from services.room.domain import draws as d
from services.room.domain import reminders as r
from services.room.domain import room as rm
from services.room.domain import viewers as v

AGGREGATE_ROOM = "room"
AGGREGATE_VISIT = "visit"
AGGREGATE_COMMENT = "comment"
AGGREGATE_DRAW = "draw"
AGGREGATE_REMINDER = "reminder"
AGGREGATE_SUBSCRIPTION = "subscription"

DomainEvent = (
    rm.RoomEvent
    | v.VisitEvent
    | c.CommentEvent
    | d.DrawHeld
    | r.ReminderSent
    | r.ReminderSubscribed
)


def _stamp(at: datetime | None) -> Any:
    return timestamp(at) if at is not None else None


def _to_proto(event: DomainEvent) -> Message:
    match event:
        case rm.RoomScheduled():
            return pb.RoomScheduled(
                room_id=event.room_id,
                host_id=event.host_id,
                title=event.title,
                starts_at=_stamp(event.starts_at),
                ends_at=_stamp(event.ends_at),
                cover_url=event.cover_url,
                channels=list(event.channels),
            )
        case rm.RoomRescheduled():
            return pb.RoomRescheduled(
                room_id=event.room_id,
                starts_at=_stamp(event.starts_at),
                ends_at=_stamp(event.ends_at),
            )
        case rm.RoomCancelled():
            return pb.RoomCancelled(room_id=event.room_id, reason=event.reason)
        case rm.RoomStarted():
            return pb.RoomStarted(
                room_id=event.room_id,
                host_id=event.host_id,
                started_at=_stamp(event.started_at),
                ends_at=_stamp(event.ends_at),
            )
        case rm.RoomEnded():
            return pb.RoomEnded(
                room_id=event.room_id,
                ended_at=_stamp(event.ended_at),
                peak_viewers=event.peak_viewers,
                unique_viewers=event.unique_viewers,
                watched_seconds=event.watched_seconds,
            )
        case rm.ProductAddedToLineup():
            return pb.ProductAddedToLineup(
                room_id=event.room_id, sku_id=event.sku_id, position=event.position
            )
        case rm.ProductRemovedFromLineup():
            return pb.ProductRemovedFromLineup(room_id=event.room_id, sku_id=event.sku_id)
        case rm.LineupReordered():
            return pb.LineupReordered(room_id=event.room_id, sku_ids=list(event.sku_ids))
        case rm.ProductShelfChanged():
            return pb.ProductShelfChanged(
                room_id=event.room_id, sku_id=event.sku_id, on_shelf=event.on_shelf
            )
        case rm.ProductPinned():
            return pb.ProductPinned(room_id=event.room_id, sku_id=event.sku_id)
        case rm.ProductUnpinned():
            return pb.ProductUnpinned(room_id=event.room_id, sku_id=event.sku_id)
        case rm.UserMuted():
            return pb.UserMuted(room_id=event.room_id, user_id=event.user_id, reason=event.reason)
        case rm.UserUnmuted():
            return pb.UserUnmuted(room_id=event.room_id, user_id=event.user_id)
        case rm.BannedWordsChanged():
            return pb.BannedWordsChanged(room_id=event.room_id, words=list(event.words))
        case rm.SlowModeChanged():
            return pb.SlowModeChanged(
                room_id=event.room_id, interval_seconds=event.interval_seconds
            )
        case v.ViewerJoined():
            return pb.ViewerJoined(
                room_id=event.room_id,
                viewer_id=event.viewer_id,
                channel=event.channel,
                share_code=event.share_code,
                entry=event.entry,
                joined_at=_stamp(event.joined_at),
                device_id=event.device_id,
                visit_id=event.visit_id,
            )
        case v.ViewerLeft():
            return pb.ViewerLeft(
                room_id=event.room_id,
                viewer_id=event.viewer_id,
                watched_seconds=event.watched_seconds,
                left_at=_stamp(event.left_at),
                visit_id=event.visit_id,
                reason=event.reason.value,
            )
        case c.CommentPosted():
            return pb.CommentPosted(
                room_id=event.room_id,
                comment_id=event.comment_id,
                viewer_id=event.viewer_id,
                text=event.text,
                posted_at=_stamp(event.posted_at),
            )
        case c.CommentDeleted():
            return pb.CommentDeleted(
                room_id=event.room_id, comment_id=event.comment_id, deleted_by=event.deleted_by
            )
        case d.DrawHeld():
            return pb.DrawHeld(
                room_id=event.room_id,
                draw_id=event.draw_id,
                prize=event.prize,
                prizes=event.prizes,
                pool=event.pool.value,
                keyword=event.keyword,
                seed=event.seed,
                candidates_sha256=event.candidates_sha256,
                candidate_count=event.candidate_count,
                winners=list(event.winners),
                held_at=_stamp(event.held_at),
            )
        case r.ReminderSubscribed():
            return pb.ReminderSubscribed(
                target=event.target.value,
                target_id=event.target_id,
                viewer_id=event.viewer_id,
                subscribed_at=_stamp(event.subscribed_at),
            )
        case r.ReminderSent():
            return pb.ReminderSent(
                room_id=event.room_id,
                viewer_id=event.viewer_id,
                kind=event.kind.value,
                channel=event.channel,
                sent_at=_stamp(event.sent_at),
            )
    raise TypeError(f"not a room service event: {event!r}")


def encode(event: DomainEvent, occurred_at: datetime | None = None) -> NewEvent:
    return NewEvent.of(_to_proto(event), occurred_at)


def _decoder(
    message_type: type[Message], build: Callable[[Any], rm.RoomEvent]
) -> tuple[str, Callable[[bytes], rm.RoomEvent]]:
    return message_type.DESCRIPTOR.full_name, lambda payload: build(
        message_type.FromString(payload)
    )


_ROOM_DECODERS: dict[str, Callable[[bytes], rm.RoomEvent]] = dict(
    [
        _decoder(
            pb.RoomScheduled,
            lambda m: rm.RoomScheduled(
                m.room_id,
                m.host_id,
                m.title,
                m.cover_url,
                tuple(m.channels),
                moment(m.starts_at),
                moment(m.ends_at),
            ),
        ),
        _decoder(
            pb.RoomRescheduled,
            lambda m: rm.RoomRescheduled(m.room_id, moment(m.starts_at), moment(m.ends_at)),
        ),
        _decoder(pb.RoomCancelled, lambda m: rm.RoomCancelled(m.room_id, m.reason)),
        _decoder(
            pb.RoomStarted,
            lambda m: rm.RoomStarted(m.room_id, m.host_id, moment(m.started_at), moment(m.ends_at)),
        ),
        _decoder(
            pb.RoomEnded,
            lambda m: rm.RoomEnded(
                m.room_id, moment(m.ended_at), m.peak_viewers, m.unique_viewers, m.watched_seconds
            ),
        ),
        _decoder(
            pb.ProductAddedToLineup,
            lambda m: rm.ProductAddedToLineup(m.room_id, m.sku_id, m.position),
        ),
        _decoder(
            pb.ProductRemovedFromLineup,
            lambda m: rm.ProductRemovedFromLineup(m.room_id, m.sku_id),
        ),
        _decoder(pb.LineupReordered, lambda m: rm.LineupReordered(m.room_id, tuple(m.sku_ids))),
        _decoder(
            pb.ProductShelfChanged,
            lambda m: rm.ProductShelfChanged(m.room_id, m.sku_id, m.on_shelf),
        ),
        _decoder(pb.ProductPinned, lambda m: rm.ProductPinned(m.room_id, m.sku_id)),
        _decoder(pb.ProductUnpinned, lambda m: rm.ProductUnpinned(m.room_id, m.sku_id)),
        _decoder(pb.UserMuted, lambda m: rm.UserMuted(m.room_id, m.user_id, m.reason)),
        _decoder(pb.UserUnmuted, lambda m: rm.UserUnmuted(m.room_id, m.user_id)),
        _decoder(pb.BannedWordsChanged, lambda m: rm.BannedWordsChanged(m.room_id, tuple(m.words))),
        _decoder(pb.SlowModeChanged, lambda m: rm.SlowModeChanged(m.room_id, m.interval_seconds)),
    ]
)


def decode_room_event(stored: StoredEvent) -> rm.RoomEvent:
    decoder = _ROOM_DECODERS.get(stored.event_type)
    if decoder is None:
        raise ValueError(f"not a room event: {stored.event_type}")
    return decoder(stored.payload)
