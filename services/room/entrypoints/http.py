"""Room's HTTP API: hosts and operators run rooms, viewers join, comment and listen."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, Field

from services.kit.eventstore import utcnow
from services.kit.http import CurrentCaller, add_readiness_check, create_app
from services.kit.ratelimit import install_rate_limiter, limit_rate
from services.kit.tenancy import MAX_ID_LENGTH
from services.room.adapters.push import PushHub
from services.room.application.ports import (
    Campaigns,
    CampaignView,
    Clock,
    Notifier,
    StoredComment,
)
from services.room.bootstrap import RoomService, room_service
from services.room.domain.comments import MAX_COMMENT_LENGTH, PostComment
from services.room.domain.draws import MAX_PRIZES, DrawHeld, DrawPool, HoldDraw
from services.room.domain.reminders import SubscriptionTarget
from services.room.domain.room import (
    MAX_BANNED_WORDS,
    MAX_SLOW_MODE_SECONDS,
    MAX_TITLE_LENGTH,
    MAX_URL_LENGTH,
    RescheduleRoom,
    Room,
    ScheduleRoom,
)
from services.room.domain.viewers import JoinRoom, ViewerFiguresNow
from services.room.entrypoints.live import live_router
from services.room.settings import RoomSettings

ID_PATTERN = r"^[\x21-\x7e]+$"
Id = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
MAX_DURATION_MINUTES = 24 * 60


class NewRoom(BaseModel):
    room_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)
    host_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)
    title: str = Field(min_length=1, max_length=MAX_TITLE_LENGTH)
    cover_url: str = Field(min_length=1, max_length=MAX_URL_LENGTH)
    channels: list[str] = Field(min_length=1, max_length=3)
    starts_at: AwareDatetime | None = Field(default=None, description="Omitted: now")
    duration_minutes: int = Field(default=120, ge=1, le=MAX_DURATION_MINUTES)


class NewSchedule(BaseModel):
    starts_at: AwareDatetime
    duration_minutes: int | None = Field(default=None, ge=1, le=MAX_DURATION_MINUTES)


class Cancellation(BaseModel):
    reason: str = Field(default="", max_length=200)


class LineupEntry(BaseModel):
    sku_id: str
    on_shelf: bool


class RoomView(BaseModel):
    room_id: str
    merchant_id: str
    host_id: str
    title: str
    cover_url: str
    channels: list[str]
    state: str
    starts_at: datetime | None
    ends_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    lineup: list[LineupEntry]
    pinned_sku: str | None
    slow_mode_seconds: int
    peak_viewers: int
    unique_viewers: int
    watched_seconds: int
    play_urls: dict[str, str]
    version: int

    @classmethod
    def of(cls, room: Room, play_urls: dict[str, str]) -> RoomView:
        return cls(
            room_id=room.room_id,
            merchant_id=room.merchant_id,
            host_id=room.host_id,
            title=room.title,
            cover_url=room.cover_url,
            channels=list(room.channels),
            state=room.state.value,
            starts_at=room.starts_at,
            ends_at=room.ends_at,
            started_at=room.started_at,
            ended_at=room.ended_at,
            lineup=[LineupEntry(sku_id=i.sku_id, on_shelf=i.on_shelf) for i in room.lineup],
            pinned_sku=room.pinned_sku,
            slow_mode_seconds=room.moderation.slow_mode_seconds,
            peak_viewers=room.figures.peak_viewers,
            unique_viewers=room.figures.unique_viewers,
            watched_seconds=room.figures.watched_seconds,
            play_urls=play_urls,
            version=room.version,
        )


class Moderation(BaseModel):
    muted: list[str]
    banned_words: list[str]
    slow_mode_seconds: int


class StreamView(BaseModel):
    push_url: str
    play_urls: dict[str, str]


class Join(BaseModel):
    channel: str = Field(description="mini_program | h5 | app")
    share_code: str = Field(default="", max_length=64)
    entry: str = Field(default="", description="share_link | invitation_card | empty")
    device_id: str = Field(default="", max_length=128)


class Joined(BaseModel):
    visit_id: str
    new_visit: bool
    room: RoomView


class Left(BaseModel):
    watched_seconds: int


class Figures(BaseModel):
    concurrent: int
    unique: int
    peak: int
    watched_seconds: int

    @classmethod
    def of(cls, figures: ViewerFiguresNow) -> Figures:
        return cls(
            concurrent=figures.concurrent,
            unique=figures.unique,
            peak=figures.peak,
            watched_seconds=figures.watched_seconds,
        )


class Product(BaseModel):
    sku_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)


class Order(BaseModel):
    sku_ids: list[str] = Field(max_length=500)


class Shelf(BaseModel):
    on_shelf: bool


class Mute(BaseModel):
    reason: str = Field(default="", max_length=200)


class BannedWords(BaseModel):
    words: list[str] = Field(max_length=MAX_BANNED_WORDS)


class SlowMode(BaseModel):
    interval_seconds: int = Field(ge=0, le=MAX_SLOW_MODE_SECONDS)


class NewComment(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_COMMENT_LENGTH)


class Comment(BaseModel):
    comment_id: str
    viewer_id: str
    text: str
    posted_at: datetime

    @classmethod
    def of(cls, comment: StoredComment) -> Comment:
        return cls(
            comment_id=comment.comment_id,
            viewer_id=comment.viewer_id,
            text=comment.text,
            posted_at=comment.posted_at,
        )


class NewDraw(BaseModel):
    draw_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)
    prize: str = Field(min_length=1, max_length=100)
    prizes: int = Field(ge=1, le=MAX_PRIZES)
    pool: DrawPool
    keyword: str = Field(default="", max_length=50)
    seed: str = Field(default="", max_length=128, description="Empty: a fresh random seed")


class Draw(BaseModel):
    draw_id: str
    room_id: str
    prize: str
    prizes: int
    pool: str
    keyword: str
    seed: str
    candidates_sha256: str
    candidate_count: int
    winners: list[str]
    held_at: datetime
    candidates: list[str] | None = None

    @classmethod
    def of(cls, draw: DrawHeld, candidates: list[str] | None = None) -> Draw:
        return cls(
            draw_id=draw.draw_id,
            room_id=draw.room_id,
            prize=draw.prize,
            prizes=draw.prizes,
            pool=draw.pool.value,
            keyword=draw.keyword,
            seed=draw.seed,
            candidates_sha256=draw.candidates_sha256,
            candidate_count=draw.candidate_count,
            winners=list(draw.winners),
            held_at=draw.held_at,
            candidates=candidates,
        )


class Campaign(BaseModel):
    campaign_id: str
    sku_id: str
    room_id: str
    state: str
    starts_at: datetime | None
    ends_at: datetime | None

    @classmethod
    def of(cls, campaign: CampaignView) -> Campaign:
        return cls(
            campaign_id=campaign.campaign_id,
            sku_id=campaign.sku_id,
            room_id=campaign.room_id,
            state=campaign.state,
            starts_at=campaign.starts_at,
            ends_at=campaign.ends_at,
        )


router = APIRouter(prefix="/v1")


def _service(request: Request) -> RoomService:
    service: RoomService = request.app.state.room
    return service


def _view(request: Request, room: Room) -> RoomView:
    return RoomView.of(room, _service(request).rooms.play_urls(room.merchant_id, room.room_id))


# -- rooms ------------------------------------------------------------------------------


@router.post("/rooms", status_code=201, tags=["rooms"], summary="Schedule a room")
async def schedule(body: NewRoom, caller: CurrentCaller, request: Request) -> RoomView:
    room = await _service(request).rooms.schedule(
        caller,
        ScheduleRoom(
            merchant_id=caller.tenant(),
            room_id=body.room_id,
            host_id=body.host_id,
            title=body.title,
            cover_url=body.cover_url,
            channels=tuple(body.channels),
            starts_at=body.starts_at,
            duration=timedelta(minutes=body.duration_minutes),
        ),
    )
    return _view(request, room)


@router.get("/rooms/{room_id}", tags=["rooms"], summary="A room")
async def read(room_id: Id, caller: CurrentCaller, request: Request) -> RoomView:
    return _view(request, await _service(request).rooms.get(caller, caller.tenant(), room_id))


@router.post("/rooms/{room_id}/reschedule", tags=["rooms"], summary="Move a scheduled room")
async def reschedule(
    room_id: Id, body: NewSchedule, caller: CurrentCaller, request: Request
) -> RoomView:
    duration = timedelta(minutes=body.duration_minutes) if body.duration_minutes else None
    room = await _service(request).rooms.reschedule(
        caller, caller.tenant(), room_id, RescheduleRoom(body.starts_at, duration)
    )
    return _view(request, room)


@router.post("/rooms/{room_id}/cancel", tags=["rooms"], summary="Cancel a scheduled room")
async def cancel(
    room_id: Id, body: Cancellation, caller: CurrentCaller, request: Request
) -> RoomView:
    room = await _service(request).rooms.cancel(caller, caller.tenant(), room_id, body.reason)
    return _view(request, room)


@router.post("/rooms/{room_id}/start", tags=["rooms"], summary="Go live")
async def start(room_id: Id, caller: CurrentCaller, request: Request) -> RoomView:
    return _view(request, await _service(request).rooms.start(caller, caller.tenant(), room_id))


@router.post("/rooms/{room_id}/end", tags=["rooms"], summary="End the stream")
async def end(room_id: Id, caller: CurrentCaller, request: Request) -> RoomView:
    return _view(request, await _service(request).rooms.end(caller, caller.tenant(), room_id))


@router.get(
    "/rooms/{room_id}/stream", tags=["rooms"], summary="Push and play URLs (host, operators)"
)
async def stream(room_id: Id, caller: CurrentCaller, request: Request) -> StreamView:
    urls = await _service(request).rooms.stream_urls(caller, caller.tenant(), room_id)
    return StreamView(push_url=urls.push_url, play_urls=dict(urls.play_urls))


# -- viewers ----------------------------------------------------------------------------


@router.post("/rooms/{room_id}/viewers/join", tags=["viewers"], summary="Enter a live room")
async def join(room_id: Id, body: Join, caller: CurrentCaller, request: Request) -> Joined:
    service = _service(request)
    merchant_id = caller.tenant()
    result = await service.viewers.join(
        JoinRoom(
            merchant_id=merchant_id,
            room_id=room_id,
            viewer_id=caller.subject,
            channel=body.channel,
            share_code=body.share_code,
            entry=body.entry,
            device_id=body.device_id,
        )
    )
    room = await service.rooms.get(caller, merchant_id, room_id)
    return Joined(visit_id=result.visit_id, new_visit=result.new_visit, room=_view(request, room))


@router.post(
    "/rooms/{room_id}/viewers/heartbeat",
    status_code=204,
    tags=["viewers"],
    summary="Still watching (every presence timeout / 3)",
)
async def heartbeat(room_id: Id, caller: CurrentCaller, request: Request) -> Response:
    await _service(request).viewers.heartbeat(caller.tenant(), room_id, caller.subject)
    return Response(status_code=204)


@router.post("/rooms/{room_id}/viewers/leave", tags=["viewers"], summary="Leave the room")
async def leave(room_id: Id, caller: CurrentCaller, request: Request) -> Left:
    watched = await _service(request).viewers.leave(caller.tenant(), room_id, caller.subject)
    return Left(watched_seconds=watched)


@router.get("/rooms/{room_id}/viewers/stats", tags=["viewers"], summary="Viewer figures now")
async def stats(room_id: Id, caller: CurrentCaller, request: Request) -> Figures:
    service = _service(request)
    await service.rooms.get(caller, caller.tenant(), room_id)
    return Figures.of(await service.viewers.figures(caller.tenant(), room_id))


# -- line-up and pinning ----------------------------------------------------------------


@router.post("/rooms/{room_id}/lineup", tags=["line-up"], summary="Add a product")
async def add_product(
    room_id: Id, body: Product, caller: CurrentCaller, request: Request
) -> RoomView:
    rooms = _service(request).rooms
    return _view(request, await rooms.add_product(caller, caller.tenant(), room_id, body.sku_id))


@router.delete("/rooms/{room_id}/lineup/{sku_id}", tags=["line-up"], summary="Remove a product")
async def remove_product(
    room_id: Id, sku_id: Id, caller: CurrentCaller, request: Request
) -> RoomView:
    rooms = _service(request).rooms
    return _view(request, await rooms.remove_product(caller, caller.tenant(), room_id, sku_id))


@router.put("/rooms/{room_id}/lineup-order", tags=["line-up"], summary="Reorder the line-up")
async def reorder(room_id: Id, body: Order, caller: CurrentCaller, request: Request) -> RoomView:
    rooms = _service(request).rooms
    return _view(request, await rooms.reorder(caller, caller.tenant(), room_id, body.sku_ids))


@router.put(
    "/rooms/{room_id}/lineup/{sku_id}/shelf", tags=["line-up"], summary="On or off the shelf"
)
async def shelf(
    room_id: Id, sku_id: Id, body: Shelf, caller: CurrentCaller, request: Request
) -> RoomView:
    room = await _service(request).rooms.set_shelf(
        caller, caller.tenant(), room_id, sku_id, body.on_shelf
    )
    return _view(request, room)


@router.put("/rooms/{room_id}/pin", tags=["line-up"], summary="Pin the product explained now")
async def pin(room_id: Id, body: Product, caller: CurrentCaller, request: Request) -> RoomView:
    rooms = _service(request).rooms
    return _view(request, await rooms.pin(caller, caller.tenant(), room_id, body.sku_id))


@router.delete("/rooms/{room_id}/pin", tags=["line-up"], summary="Unpin")
async def unpin(room_id: Id, caller: CurrentCaller, request: Request) -> RoomView:
    return _view(request, await _service(request).rooms.unpin(caller, caller.tenant(), room_id))


# -- comments and moderation ------------------------------------------------------------


@router.post(
    "/rooms/{room_id}/comments",
    status_code=201,
    tags=["comments"],
    summary="Comment",
    dependencies=[Depends(limit_rate("comment"))],
)
async def post_comment(
    room_id: Id, body: NewComment, caller: CurrentCaller, request: Request
) -> Comment:
    comment = await _service(request).comments.post(
        PostComment(caller.tenant(), room_id, caller.subject, body.text)
    )
    return Comment.of(comment)


@router.get("/rooms/{room_id}/comments", tags=["comments"], summary="Recent comments")
async def recent_comments(
    room_id: Id,
    caller: CurrentCaller,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[Comment]:
    found = await _service(request).comments.recent(caller, caller.tenant(), room_id, limit)
    return [Comment.of(c) for c in found]


@router.delete(
    "/rooms/{room_id}/comments/{comment_id}", tags=["comments"], summary="Delete (operators)"
)
async def delete_comment(
    room_id: Id, comment_id: Id, caller: CurrentCaller, request: Request
) -> Comment:
    comments = _service(request).comments
    return Comment.of(await comments.delete(caller, caller.tenant(), room_id, comment_id))


@router.get("/rooms/{room_id}/moderation", tags=["comments"], summary="Moderation settings")
async def moderation(room_id: Id, caller: CurrentCaller, request: Request) -> Moderation:
    rooms = _service(request).rooms
    room = await rooms.moderated(caller, caller.tenant(), room_id)
    return Moderation(
        muted=sorted(room.moderation.muted),
        banned_words=list(room.moderation.banned_words),
        slow_mode_seconds=room.moderation.slow_mode_seconds,
    )


@router.put("/rooms/{room_id}/mutes/{user_id}", tags=["comments"], summary="Mute a user")
async def mute(
    room_id: Id, user_id: Id, body: Mute, caller: CurrentCaller, request: Request
) -> Response:
    await _service(request).rooms.mute(caller, caller.tenant(), room_id, user_id, body.reason)
    return Response(status_code=204)


@router.delete("/rooms/{room_id}/mutes/{user_id}", tags=["comments"], summary="Unmute a user")
async def unmute(room_id: Id, user_id: Id, caller: CurrentCaller, request: Request) -> Response:
    await _service(request).rooms.unmute(caller, caller.tenant(), room_id, user_id)
    return Response(status_code=204)


@router.put("/rooms/{room_id}/banned-words", tags=["comments"], summary="Set banned words")
async def banned_words(
    room_id: Id, body: BannedWords, caller: CurrentCaller, request: Request
) -> Response:
    rooms = _service(request).rooms
    await rooms.set_banned_words(caller, caller.tenant(), room_id, body.words)
    return Response(status_code=204)


@router.put("/rooms/{room_id}/slow-mode", tags=["comments"], summary="Set slow mode")
async def slow_mode(
    room_id: Id, body: SlowMode, caller: CurrentCaller, request: Request
) -> Response:
    rooms = _service(request).rooms
    await rooms.set_slow_mode(caller, caller.tenant(), room_id, body.interval_seconds)
    return Response(status_code=204)


# -- draws, reminders, campaigns --------------------------------------------------------


@router.post("/rooms/{room_id}/draws", status_code=201, tags=["draws"], summary="Hold a draw")
async def hold_draw(room_id: Id, body: NewDraw, caller: CurrentCaller, request: Request) -> Draw:
    held = await _service(request).draws.hold(
        caller,
        HoldDraw(
            merchant_id=caller.tenant(),
            room_id=room_id,
            draw_id=body.draw_id,
            prize=body.prize,
            prizes=body.prizes,
            pool=body.pool,
            keyword=body.keyword,
            seed=body.seed,
        ),
    )
    return Draw.of(held)


@router.get(
    "/rooms/{room_id}/draws/{draw_id}", tags=["draws"], summary="A draw, with its candidates"
)
async def read_draw(room_id: Id, draw_id: Id, caller: CurrentCaller, request: Request) -> Draw:
    held, candidates = await _service(request).draws.get(caller, caller.tenant(), room_id, draw_id)
    return Draw.of(held, candidates)


@router.put("/rooms/{room_id}/reminder", status_code=204, tags=["reminders"], summary="Remind me")
async def remind_room(room_id: Id, caller: CurrentCaller, request: Request) -> Response:
    reminders = _service(request).reminders
    await reminders.subscribe(caller, caller.tenant(), SubscriptionTarget.ROOM, room_id)
    return Response(status_code=204)


@router.delete("/rooms/{room_id}/reminder", status_code=204, tags=["reminders"])
async def unremind_room(room_id: Id, caller: CurrentCaller, request: Request) -> Response:
    reminders = _service(request).reminders
    await reminders.unsubscribe(caller, caller.tenant(), SubscriptionTarget.ROOM, room_id)
    return Response(status_code=204)


@router.put(
    "/hosts/{host_id}/reminder",
    status_code=204,
    tags=["reminders"],
    summary="Remind me of every room of this host",
)
async def remind_host(host_id: Id, caller: CurrentCaller, request: Request) -> Response:
    reminders = _service(request).reminders
    await reminders.subscribe(caller, caller.tenant(), SubscriptionTarget.HOST, host_id)
    return Response(status_code=204)


@router.delete("/hosts/{host_id}/reminder", status_code=204, tags=["reminders"])
async def unremind_host(host_id: Id, caller: CurrentCaller, request: Request) -> Response:
    reminders = _service(request).reminders
    await reminders.unsubscribe(caller, caller.tenant(), SubscriptionTarget.HOST, host_id)
    return Response(status_code=204)


@router.post(
    "/rooms/{room_id}/campaigns/{campaign_id}/start",
    tags=["campaigns"],
    summary="Launch a flash-sale campaign (host, operators)",
)
async def start_campaign(
    room_id: Id, campaign_id: Id, caller: CurrentCaller, request: Request
) -> Campaign:
    campaigns = _service(request).campaigns
    return Campaign.of(await campaigns.start(caller, caller.tenant(), room_id, campaign_id))


@router.post(
    "/rooms/{room_id}/campaigns/{campaign_id}/stop",
    tags=["campaigns"],
    summary="Stop a flash-sale campaign (host, operators)",
)
async def stop_campaign(
    room_id: Id, campaign_id: Id, caller: CurrentCaller, request: Request
) -> Campaign:
    campaigns = _service(request).campaigns
    return Campaign.of(await campaigns.stop(caller, caller.tenant(), room_id, campaign_id))


def create_http_app(
    settings: RoomSettings,
    *,
    clock: Clock = utcnow,
    campaigns: Campaigns | None = None,
    notifier: Notifier | None = None,
) -> FastAPI:
    """The keyword arguments go to :func:`room_service` (tests pass fakes of remote
    services and a clock)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with room_service(
            settings, clock=clock, campaigns=campaigns, notifier=notifier
        ) as parts:
            hub = PushHub(
                parts.redis,
                prefix=settings.push_channel_prefix,
                queue_size=settings.push_queue_size,
            )
            await hub.start()
            app.state.room = parts
            app.state.hub = hub
            install_rate_limiter(app, parts.redis, settings, settings.rate_limits())
            add_readiness_check(app, "postgres", lambda: parts.pool.fetchval("SELECT 1"))
            add_readiness_check(app, "redis", parts.redis.ping)
            try:
                yield
            finally:
                await hub.stop()

    return create_app(settings, title="Room", routers=[router, live_router], lifespan=lifespan)
