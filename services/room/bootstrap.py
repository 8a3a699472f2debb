"""Build the room service's parts once per process, for any entry point."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import httpx
from redis.asyncio import Redis

from services.kit.db import database
from services.kit.eventstore import PostgresEventStore, utcnow
from services.kit.grpc import authenticated_channel
from services.kit.identity import ServiceIdentity
from services.kit.redis import create_redis
from services.room.adapters.campaign_book import PostgresCampaignBook
from services.room.adapters.comments import PostgresComments, RedisCommentFeed
from services.room.adapters.draws import PostgresDraws
from services.room.adapters.notifier import LogNotifier, WebhookNotifier
from services.room.adapters.presence import RedisPresence
from services.room.adapters.promotion_client import GrpcCampaigns
from services.room.adapters.push import RedisPush
from services.room.adapters.reminders import PostgresReminders
from services.room.adapters.rooms import PostgresRooms
from services.room.adapters.streaming import DerivedStreamUrls
from services.room.adapters.visits import GroupCommittedVisits
from services.room.application.campaigns import RoomCampaigns
from services.room.application.comments import Comments
from services.room.application.draws import Draws
from services.room.application.feed import RoomFeed
from services.room.application.ports import Campaigns, Clock, Notifier
from services.room.application.reminders import Reminders
from services.room.application.rooms import Rooms
from services.room.application.viewers import Viewers
from services.room.settings import RoomSettings

SCHEMA_PACKAGES = ["services.room"]


@dataclass(frozen=True)
class RoomService:
    settings: RoomSettings
    pool: asyncpg.Pool
    redis: Redis
    store: PostgresEventStore
    rooms: Rooms
    viewers: Viewers
    comments: Comments
    draws: Draws
    reminders: Reminders
    campaigns: RoomCampaigns
    feed: RoomFeed


@asynccontextmanager
async def room_service(
    settings: RoomSettings,
    *,
    clock: Clock = utcnow,
    campaigns: Campaigns | None = None,
    notifier: Notifier | None = None,
) -> AsyncIterator[RoomService]:
    """``clock`` is the time rooms and presence are judged by (tests move it);
    ``campaigns`` and ``notifier`` replace the promotion client and the configured channel."""
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(database(settings, SCHEMA_PACKAGES))
        redis = create_redis(settings.redis_url)
        stack.push_async_callback(redis.aclose)
        store = PostgresEventStore(pool, settings.service_name)
        if campaigns is None:
            identity = ServiceIdentity(settings)
            channel = authenticated_channel(settings.promotion_grpc_target, identity.token)
            stack.push_async_callback(channel.close)
            campaigns = GrpcCampaigns(channel, settings.promotion_timeout_seconds)
        if notifier is None:
            notifier = LogNotifier()
            if settings.reminder_webhook_url:
                client = await stack.enter_async_context(httpx.AsyncClient(timeout=10.0))
                notifier = WebhookNotifier(
                    client,
                    url=settings.reminder_webhook_url,
                    secret=settings.reminder_webhook_secret.get_secret_value(),
                )
        repository = PostgresRooms(
            pool, store, reminder_lead=timedelta(seconds=settings.reminder_lead_seconds)
        )
        presence = RedisPresence(
            redis,
            namespace=settings.redis_namespace,
            retention=timedelta(days=settings.presence_retention_days),
        )
        push = RedisPush(redis, prefix=settings.push_channel_prefix)
        comment_log = PostgresComments(pool, store, max_batch=settings.join_max_batch)
        viewers = Viewers(
            repository,
            presence,
            GroupCommittedVisits(pool, store, max_batch=settings.join_max_batch),
            push,
            clock=clock,
            timeout=timedelta(seconds=settings.presence_timeout_seconds),
            max_batch=settings.join_max_batch,
        )
        yield RoomService(
            settings=settings,
            pool=pool,
            redis=redis,
            store=store,
            rooms=Rooms(
                repository,
                presence=presence,
                viewers=viewers,
                push=push,
                streaming=DerivedStreamUrls(
                    push_base=settings.stream_push_base,
                    play_base=settings.stream_play_base,
                    key_secret=settings.stream_key_secret.get_secret_value(),
                ),
                clock=clock,
            ),
            viewers=viewers,
            comments=Comments(
                repository,
                comment_log,
                RedisCommentFeed(
                    redis, namespace=settings.redis_namespace, keep=settings.recent_comments
                ),
                push,
                clock=clock,
                buy_keywords=settings.buy_keywords,
                checkout_url_base=settings.checkout_url_base,
            ),
            draws=Draws(
                repository, viewers, comment_log, PostgresDraws(pool, store), push, clock=clock
            ),
            reminders=Reminders(
                repository,
                PostgresReminders(pool, store),
                notifier,
                clock=clock,
                batch=settings.reminder_batch,
            ),
            campaigns=RoomCampaigns(repository, campaigns, push, clock=clock),
            feed=RoomFeed(PostgresCampaignBook(), push, clock=clock),
        )
