from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.kit.ratelimit import LimitText, RateLimit
from services.kit.settings import Environment, ServiceSettings

DEVELOPMENT_WEBHOOK_SECRET = "livecommerce-development-webhook-secret"  # noqa: S105 - refused in production
DEVELOPMENT_STREAM_KEY_SECRET = "livecommerce-development-stream-key"  # noqa: S105 - refused in production


class RoomSettings(ServiceSettings):
    """Environment prefix ``ROOM_``; defaults point at the local stack."""

    model_config = SettingsConfigDict(env_prefix="ROOM_", extra="ignore")

    service_name: str = "room"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:55432/room"
    http_port: int = 8105

    stream_push_base: str = "rtmp://push.live.localhost/live"
    """The streaming provider's ingest base; the host pushes to <base>/<stream>?key=..."""
    stream_play_base: str = "https://play.live.localhost/live"
    """Viewers play <base>/<stream>.flv and .m3u8."""
    stream_key_secret: SecretStr = SecretStr(DEVELOPMENT_STREAM_KEY_SECRET)
    """Signs push keys (HMAC-SHA256), so a push URL cannot be guessed from a room id."""

    redis_namespace: str = "room"
    """Prefix of every Redis key of the service (two deployments can share a Redis)."""
    presence_timeout_seconds: int = Field(default=60, ge=5, le=3600)
    """A viewer not seen (join or heartbeat) for this long has left."""
    presence_sweep_interval_seconds: float = Field(default=5.0, gt=0)
    presence_retention_days: int = Field(default=7, ge=1)
    """How long an ended room's presence figures stay in Redis."""
    join_max_batch: int = Field(default=512, ge=1, le=4096)
    """At most this many joins share one Redis pipeline and one group commit."""

    recent_comments: int = Field(default=100, ge=10, le=1000)
    """How many comments the Redis list of a room keeps."""
    buy_keywords: list[str] = Field(default_factory=lambda: ["buy", "买", "想要"])
    """A comment that is exactly one of these, while a product is pinned, gets that viewer a
    checkout link pushed."""
    checkout_url_base: str = "https://shop.localhost/checkout"

    push_queue_size: int = Field(default=256, ge=8, le=65536)
    """Messages one push client may have waiting; a client further behind is dropped."""
    push_channel_prefix: str = "room-push"

    promotion_events_topic: str = "promotion.events"
    """Campaigns and coupon drops of rooms: pushed to their viewers."""
    inventory_events_topic: str = "inventory.events"
    """Holds on a room campaign's sale: its stock left, pushed to the room's viewers."""
    promotion_grpc_target: str = "127.0.0.1:50103"
    promotion_timeout_seconds: float = Field(default=5.0, gt=0)

    reminder_lead_seconds: int = Field(default=600, ge=0, le=7 * 24 * 3600)
    """The lead reminder goes this long before a room's start (0: only the go-live one)."""
    reminder_webhook_url: str | None = None
    """Where reminders are POSTed (signed); unset: reminders are written to the log."""
    reminder_webhook_secret: SecretStr = SecretStr(DEVELOPMENT_WEBHOOK_SECRET)
    reminder_delivery_interval_seconds: float = Field(default=1.0, gt=0)
    reminder_batch: int = Field(default=100, ge=1, le=1000)

    comment_limit_per_user: LimitText = "5/10 seconds"
    """How often one viewer may comment (a bot flooding the chat is refused with 429)."""
    comment_limit_per_address: LimitText = "300/10 seconds"

    def rate_limits(self) -> dict[str, RateLimit]:
        return {"comment": RateLimit(self.comment_limit_per_user, self.comment_limit_per_address)}

    @model_validator(mode="after")
    def _refuse_development_secret_in_production(self) -> Self:
        if self.environment is not Environment.PRODUCTION:
            return self
        if self.reminder_webhook_secret.get_secret_value() == DEVELOPMENT_WEBHOOK_SECRET:
            raise ValueError("set ROOM_REMINDER_WEBHOOK_SECRET: the development one is public")
        if self.stream_key_secret.get_secret_value() == DEVELOPMENT_STREAM_KEY_SECRET:
            raise ValueError("set ROOM_STREAM_KEY_SECRET: the development one is public")
        return self
