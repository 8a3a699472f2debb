from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.kit.ratelimit import LimitText, RateLimit
from services.kit.settings import ServiceSettings


class PromotionSettings(ServiceSettings):
    """Environment prefix ``PROMOTION_``; defaults point at the local stack."""

    model_config = SettingsConfigDict(env_prefix="PROMOTION_", extra="ignore")

    service_name: str = "promotion"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:55432/promotion"
    http_port: int = 8103
    grpc_port: int = 50103
    inventory_grpc_target: str = "127.0.0.1:50101"
    """Where the inventory gRPC server is (campaigns allocate their stock there)."""
    claim_max_batch: int = Field(default=32, ge=1, le=4096)
    """At most this many coupon claims share one Redis pipeline and one group commit."""
    claim_group_commits: int = Field(default=2, ge=1, le=8)
    """How many group commits of claims may run at once, each on a connection of its own:
    with two, one batch is recorded while the next is decided, and the process is not idle
    while Postgres commits (docs/benchmarks.md, coupon claims, session 11)."""
    coupon_lock_seconds: int = Field(default=900, ge=10, le=86_400)
    """How long PriceOrder locks coupons for an order that names no lock_until."""
    order_events_topic: str = "order.events"
    sweep_interval_seconds: float = Field(default=10.0, gt=0)
    """How often the worker gives back claims Redis granted that never became durable."""
    claim_limit_per_user: LimitText = "20/10 seconds"
    """Claims one buyer may attempt on one coupon drop (``limits`` notation): a buyer who
    taps again and again is slowed down, not refused for good."""
    claim_limit_per_address: LimitText = "1000/10 seconds"
    """Claims on one drop from one client address: generous, as carrier-grade NAT puts many
    mobile buyers behind one address."""

    @property
    def claim_rate_limit(self) -> RateLimit:
        """Counted per drop in the claim's own Redis script (no round trip of its own)."""
        return RateLimit(self.claim_limit_per_user, self.claim_limit_per_address)
