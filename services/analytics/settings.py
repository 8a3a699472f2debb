from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.kit.settings import ServiceSettings

SOURCE_TOPICS = (
    "room.events",
    "order.events",
    "promotion.events",
    "inventory.events",
    "referral.events",
)


class AnalyticsSettings(ServiceSettings):
    """Environment prefix ``ANALYTICS_``; defaults point at the local stack."""

    model_config = SettingsConfigDict(env_prefix="ANALYTICS_", extra="ignore")

    service_name: str = "analytics"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:55432/analytics"
    http_port: int = 8107
    source_topics: list[str] = Field(default_factory=lambda: list(SOURCE_TOPICS))
    """Every service's events topic: analytics counts from events only."""
    stream_app_id: str = "analytics"
    """The faust application id: the consumer group of the stream processor."""
    batch_size: int = Field(default=500, ge=1)
    """Events folded in one transaction at most."""
    batch_within_seconds: float = Field(default=0.2, gt=0)
    """How long a batch waits to fill before it is folded (bounds the added latency)."""
    stream_data_dir: str | None = None
    """Faust's data folder (it keeps no state there: the state is in Postgres); None: a
    folder named after the app id in the system's temporary folder."""
    stream_session_timeout_seconds: float | None = Field(default=None, gt=0)
    """How soon the group notices a worker that went away (None: 6 s on the local broker,
    which notices a departure only by this timeout, 10 s on Kafka)."""
    live_poll_seconds: float = Field(default=0.5, gt=0)
    """How often the live stream (SSE) looks for a change of the room's figures."""
    live_gauge_seconds: float = Field(default=2.0, gt=0)
    """How often the worker refreshes the Prometheus gauges of live rooms."""
