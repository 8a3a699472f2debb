"""Fixtures for room tests against the real stack: a database per module (the room schema
installs btree_gist, once per database), the service's parts with a movable clock and
fakes of the remote services, and a real HTTP server for the API and WebSocket tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest_asyncio
import uvicorn

from services.kit.errors import NotFoundError, PreconditionFailedError
from services.kit.identity import Caller, Role, TokenIssuer
from services.kit.redis import create_redis
from services.kit.settings import Environment
from services.kit.testclock import MovableClock, scratch_database
from services.kit.testing import StackEndpoints, unique
from services.room.application.ports import CampaignView
from services.room.bootstrap import RoomService, room_service
from services.room.domain.reminders import Reminder
from services.room.entrypoints.http import create_http_app
from services.room.settings import RoomSettings


@pytest_asyncio.fixture(scope="module")
async def room_settings(stack: StackEndpoints) -> AsyncIterator[RoomSettings]:
    """Settings pointing at a database created for this module (dropped after it), with
    Redis keys and push channels of its own (deleted after it)."""
    namespace = unique("room")
    try:
        async with scratch_database(stack, "room_test") as dsn:
            yield RoomSettings(
                environment=Environment.TEST,
                postgres_dsn=dsn,
                postgres_pool_max=20,
                kafka_bootstrap=stack.kafka_bootstrap,
                redis_url=stack.redis_url,
                push_channel_prefix=unique("room-push"),
                redis_namespace=namespace,
                reminder_lead_seconds=3600,
            )
    finally:
        redis = create_redis(stack.redis_url)
        keys = [key async for key in redis.scan_iter(f"{namespace}:*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


@dataclass
class FakeCampaigns:
    """Promotion's campaigns as the contract describes them, in memory."""

    rooms: dict[str, str] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)

    def view(self, campaign_id: str) -> CampaignView:
        if campaign_id not in self.rooms:
            raise NotFoundError(f"campaign {campaign_id} not found")
        return CampaignView(
            campaign_id, "SKU-1", self.rooms[campaign_id], self.states[campaign_id], None, None
        )

    def _of_room(self, campaign_id: str, room_id: str) -> None:
        if self.view(campaign_id).room_id != room_id:
            raise PreconditionFailedError(f"campaign {campaign_id} sells in another room")

    async def start(self, merchant_id: str, campaign_id: str, room_id: str) -> CampaignView:
        self._of_room(campaign_id, room_id)
        self.states[campaign_id] = "live"
        return self.view(campaign_id)

    async def stop(self, merchant_id: str, campaign_id: str, room_id: str) -> CampaignView:
        self._of_room(campaign_id, room_id)
        self.states[campaign_id] = "ended"
        return self.view(campaign_id)


@dataclass
class RecordingNotifier:
    channel: str = "test"
    sent: list[Reminder] = field(default_factory=list)
    failing: set[str] = field(default_factory=set)
    """Viewers whose reminders fail to deliver."""

    async def send(self, reminder: Reminder) -> None:
        if reminder.viewer_id in self.failing:
            raise ConnectionError("gateway down")
        self.sent.append(reminder)


@dataclass
class Harness:
    service: RoomService
    clock: MovableClock
    notifier: RecordingNotifier
    campaigns: FakeCampaigns
    issuer: TokenIssuer

    def token(self, merchant_id: str, role: Role, subject: str | None = None) -> str:
        return self.issuer.mint(subject or unique(role.value), [role], merchant_id)

    def issuer_caller(self, merchant_id: str, role: Role, subject: str | None = None) -> Caller:
        """A verified caller, as the HTTP layer hands it to the application."""
        return Caller(subject or unique(role.value), frozenset({role}), merchant_id)

    def headers(self, merchant_id: str, role: Role, subject: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(merchant_id, role, subject)}"}


@pytest_asyncio.fixture
async def harness(room_settings: RoomSettings) -> AsyncIterator[Harness]:
    clock, notifier, campaigns = MovableClock(), RecordingNotifier(), FakeCampaigns()
    async with room_service(
        room_settings, clock=clock, campaigns=campaigns, notifier=notifier
    ) as service:
        yield Harness(service, clock, notifier, campaigns, TokenIssuer(room_settings))


@dataclass
class Server:
    base_url: str
    client: httpx.AsyncClient
    harness: Harness

    def ws_url(self, path: str, token: str) -> str:
        return f"ws{self.base_url.removeprefix('http')}{path}?access_token={token}"


@pytest_asyncio.fixture(scope="module")
async def server(room_settings: RoomSettings) -> AsyncIterator[Server]:
    """The room API served by uvicorn on a free port, with its own parts and fakes."""
    clock, notifier, campaigns = MovableClock(), RecordingNotifier(), FakeCampaigns()
    app = create_http_app(room_settings, clock=clock, campaigns=campaigns, notifier=notifier)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        loop="none",
        log_config=None,
        lifespan="on",
        ws="websockets-sansio",
    )
    uv = uvicorn.Server(config)
    serving = asyncio.create_task(uv.serve())
    while not uv.started:  # noqa: ASYNC110 - uvicorn.Server exposes only this flag
        await asyncio.sleep(0.01)
    port = uv.servers[0].sockets[0].getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            yield Server(
                base_url,
                client,
                Harness(app.state.room, clock, notifier, campaigns, TokenIssuer(room_settings)),
            )
    finally:
        uv.should_exit = True
        await serving


def new_room(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "room_id": unique("room"),
        "host_id": unique("host"),
        "title": "Autumn lipsticks",
        "cover_url": "https://cdn.example.com/cover.jpg",
        "channels": ["mini_program", "app"],
        "duration_minutes": 60,
    }
    body.update(changes)
    return body
