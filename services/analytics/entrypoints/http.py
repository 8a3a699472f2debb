"""The analytics HTTP API: live room dashboards (JSON and a server-sent-events stream), the
post-stream review (JSON, HTML with charts, CSV), fan profiles, a room's audience and host
performance. Merchant staff see their merchant's rooms only; a host sees their own rooms
and figures; platform callers name the merchant with ``?merchant_id=``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from services.analytics.adapters.review_page import review_csv, review_html
from services.analytics.bootstrap import Analytics, analytics
from services.analytics.domain import fans, hosts
from services.analytics.domain.review import RoomSnapshot, live_dashboard, review
from services.analytics.settings import AnalyticsSettings
from services.kit.errors import InvalidArgumentError, NotFoundError, PreconditionFailedError
from services.kit.http import CurrentCaller, add_readiness_check, create_app
from services.kit.identity import Caller, Role
from services.kit.tenancy import validate_id

STAFF = (Role.HOST, Role.OPERATOR, Role.MERCHANT_ADMIN, Role.OPS, Role.SERVICE)
MANAGERS = (Role.OPERATOR, Role.MERCHANT_ADMIN, Role.OPS, Role.SERVICE)
MerchantParam = Annotated[str, Query(max_length=64, description="for ops and services")]

router = APIRouter(prefix="/v1", tags=["analytics"])


def _parts(request: Request) -> Analytics:
    parts: Analytics = request.app.state.analytics
    return parts


def _json(value: Any) -> JSONResponse:
    return JSONResponse(jsonable_encoder(value))


def _only_host(caller: Caller) -> bool:
    """A host who is not also an operator or admin sees only their own rooms."""
    return Role.HOST in caller.roles and not caller.roles.intersection(MANAGERS)


async def _snapshot(
    request: Request, caller: Caller, room_id: str, merchant_id: str
) -> RoomSnapshot:
    caller.require_role(*STAFF)
    merchant = caller.acting_for(merchant_id, "room")
    snapshot = await _parts(request).queries.room_snapshot(
        merchant, validate_id(room_id, "room id")
    )
    if snapshot is None or (_only_host(caller) and snapshot.host_id != caller.subject):
        raise NotFoundError("room not found")
    return snapshot


async def _ended(request: Request, caller: Caller, room_id: str, merchant_id: str) -> RoomSnapshot:
    snapshot = await _snapshot(request, caller, room_id, merchant_id)
    if snapshot.ended_at is None:
        raise PreconditionFailedError("the review is generated when the room ends")
    return snapshot


@router.get("/rooms/{room_id}/live", summary="Live dashboard figures of a room")
async def live(
    room_id: str, request: Request, caller: CurrentCaller, merchant_id: MerchantParam = ""
) -> JSONResponse:
    snapshot = await _snapshot(request, caller, room_id, merchant_id)
    return _json(asdict(live_dashboard(snapshot, datetime.now(UTC))))


@router.get(
    "/rooms/{room_id}/live/stream",
    summary="The live dashboard as server-sent events: one `live` event at each change",
    response_class=StreamingResponse,
)
async def live_stream(
    room_id: str, request: Request, caller: CurrentCaller, merchant_id: MerchantParam = ""
) -> StreamingResponse:
    first = await _snapshot(request, caller, room_id, merchant_id)
    parts = _parts(request)
    merchant, room = first.merchant_id, first.room_id

    async def events() -> AsyncIterator[str]:
        seen: int | None = None
        quiet = 0.0
        while not await request.is_disconnected():
            version = await parts.queries.room_version(merchant, room)
            if version != seen:
                seen = version
                snapshot = await parts.queries.room_snapshot(merchant, room)
                if snapshot is None:
                    return
                body = json.dumps(jsonable_encoder(asdict(live_dashboard(snapshot, _now()))))
                yield f"event: live\nid: {version}\ndata: {body}\n\n"
                quiet = 0.0
                if snapshot.ended_at is not None:
                    yield "event: ended\ndata: {}\n\n"
                    return
            elif quiet >= 15:
                yield ": keep-alive\n\n"
                quiet = 0.0
            await asyncio.sleep(parts.settings.live_poll_seconds)
            quiet += parts.settings.live_poll_seconds

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _now() -> datetime:
    return datetime.now(UTC)


@router.get("/rooms/{room_id}/review", summary="The post-stream review (复盘) as JSON")
async def review_json(
    room_id: str, request: Request, caller: CurrentCaller, merchant_id: MerchantParam = ""
) -> JSONResponse:
    snapshot = await _ended(request, caller, room_id, merchant_id)
    return _json(asdict(review(snapshot, _now())))


@router.get(
    "/rooms/{room_id}/review.html",
    summary="The review as a page with charts (self-contained: fetches nothing)",
    response_class=HTMLResponse,
)
async def review_page(
    room_id: str, request: Request, caller: CurrentCaller, merchant_id: MerchantParam = ""
) -> HTMLResponse:
    snapshot = await _ended(request, caller, room_id, merchant_id)
    page = await asyncio.to_thread(review_html, review(snapshot, _now()))
    return HTMLResponse(page)


@router.get("/rooms/{room_id}/review.csv", summary="Every figure of the review as CSV")
async def review_download(
    room_id: str, request: Request, caller: CurrentCaller, merchant_id: MerchantParam = ""
) -> Response:
    snapshot = await _ended(request, caller, room_id, merchant_id)
    return Response(
        review_csv(review(snapshot, _now())),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="review-{snapshot.room_id}.csv"'},
    )


@router.get("/rooms/{room_id}/audience", summary="The aggregate fan profile of a room's viewers")
async def room_audience(
    room_id: str, request: Request, caller: CurrentCaller, merchant_id: MerchantParam = ""
) -> JSONResponse:
    snapshot = await _snapshot(request, caller, room_id, merchant_id)
    found = await _parts(request).queries.room_audience(snapshot.merchant_id, snapshot.room_id)
    if found is None:
        raise NotFoundError("room not found")
    viewers, first_time = found
    return _json(asdict(fans.audience(viewers, first_time, _now())))


@router.get("/fans/{user_id}", summary="A fan's profile (粉丝画像) with the merchant")
async def fan_profile(
    user_id: str, request: Request, caller: CurrentCaller, merchant_id: MerchantParam = ""
) -> JSONResponse:
    caller.require_role(*MANAGERS)
    merchant = caller.acting_for(merchant_id, "fan")
    figures = await _parts(request).queries.fan(merchant, validate_id(user_id, "user id"))
    if figures is None:
        raise NotFoundError("fan not found")
    return _json(asdict(fans.profile(figures, _now())))


@router.get("/hosts/performance", summary="Host performance (主播业绩) in a period")
async def host_performance(
    request: Request,
    caller: CurrentCaller,
    since: Annotated[datetime, Query(description="streams started at or after (ISO 8601)")],
    until: Annotated[datetime | None, Query(description="and before; default now")] = None,
    host_id: Annotated[list[str] | None, Query(max_length=100)] = None,
    merchant_id: MerchantParam = "",
) -> JSONResponse:
    caller.require_role(*STAFF)
    merchant = caller.acting_for(merchant_id, "host")
    end = until or _now()
    if since.tzinfo is None or end.tzinfo is None:
        raise InvalidArgumentError("since and until need a time zone (e.g. 2026-11-01T00:00Z)")
    if end <= since or end - since > timedelta(days=366):
        raise InvalidArgumentError("the period must be positive and at most 366 days")
    wanted = [validate_id(h, "host id") for h in host_id] if host_id else None
    if _only_host(caller):
        wanted = [caller.subject]
    streams = await _parts(request).queries.host_streams(merchant, wanted, since, end)
    by_host: dict[str, list[hosts.HostStream]] = {}
    for stream in streams:
        by_host.setdefault(stream.host_id, []).append(stream)
    return _json(
        {
            "merchant_id": merchant,
            "since": since,
            "until": end,
            "hosts": [
                asdict(hosts.performance(host, rooms, _now()))
                for host, rooms in sorted(by_host.items())
            ],
        }
    )


def create_http_app(settings: AnalyticsSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with analytics(settings) as parts:
            app.state.analytics = parts
            add_readiness_check(app, "postgres", lambda: parts.pool.fetchval("SELECT 1"))
            yield

    return create_app(settings, title="livecommerce analytics", routers=[router], lifespan=lifespan)
