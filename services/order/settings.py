from __future__ import annotations

from datetime import timedelta
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.kit.ratelimit import LimitText, RateLimit
from services.kit.settings import Environment, ServiceSettings
from services.order.application.orders import OrderPolicy
from services.order.sandbox.settings import (
    DEVELOPMENT_SANDBOX_API_KEY,
    DEVELOPMENT_SANDBOX_SIGNING_SECRET,
)


class OrderSettings(ServiceSettings):
    """Environment prefix ``ORDER_``; defaults point at the local stack."""

    model_config = SettingsConfigDict(env_prefix="ORDER_", extra="ignore")

    service_name: str = "order"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:55432/order"
    postgres_pool_max: int = Field(default=20, ge=1)
    http_port: int = 8102
    inventory_target: str = "127.0.0.1:50101"
    promotion_target: str = "127.0.0.1:50103"
    promotion_events_topic: str = "promotion.events"
    """Where promotion's events are (the worker cancels the orders of failed group buys)."""
    rpc_timeout_seconds: float = Field(default=5.0, gt=0)
    payment_margin_seconds: float = Field(default=30.0, ge=0)
    """The payment deadline is this long before the order's first hold expires."""
    coupon_lock_seconds: float = Field(default=1200.0, gt=0)
    auto_complete_after_seconds: float = Field(default=7 * 24 * 3600.0, gt=0)
    public_url: str = "http://127.0.0.1:8102"
    """Where payment providers reach this service (their notifications go to
    <public_url>/v1/payments/<provider>/notifications)."""
    timer_poll_seconds: float = Field(default=0.5, gt=0)
    sold_out_memory_seconds: float = Field(default=1.0, gt=0, le=60)
    """How long a process answers "sold out" for a room's SKU from memory, without pricing
    the order or asking inventory, after inventory last said so: a unit that comes back is
    offered again this much later at worst (inventory's own memory is cleared at once)."""
    sold_out_reply_interval_ms: float = Field(default=6.0, ge=0, le=100)
    """Under load, "sold out" refusals leave together at most this often: answered one by
    one, each costs the API more CPU (docs/benchmarks.md, session 14). An idle process
    answers at once. 0: each at once."""
    sandbox_url: str = "http://127.0.0.1:8190"
    sandbox_api_key: SecretStr = SecretStr(DEVELOPMENT_SANDBOX_API_KEY)
    sandbox_signing_secret: SecretStr = SecretStr(DEVELOPMENT_SANDBOX_SIGNING_SECRET)
    buy_limit_per_user: LimitText = "20/10 seconds"
    """Order attempts one buyer may make (``limits`` notation); retries count too."""
    buy_limit_per_address: LimitText = "600/10 seconds"
    """Order attempts from one client address: generous, as carrier-grade NAT puts many
    mobile buyers behind one address."""
    notification_replay_seconds: float = Field(default=900.0, ge=60)
    """How long a payment notification id is remembered: longer than twice the provider's
    signed-timestamp window, so a replay the window still lets through finds its id."""

    @model_validator(mode="after")
    def _refuse_development_sandbox_secrets_in_production(self) -> Self:
        if self.environment is Environment.PRODUCTION and (
            self.sandbox_signing_secret.get_secret_value() == DEVELOPMENT_SANDBOX_SIGNING_SECRET
            or self.sandbox_api_key.get_secret_value() == DEVELOPMENT_SANDBOX_API_KEY
        ):
            raise ValueError("set ORDER_SANDBOX_API_KEY and ORDER_SANDBOX_SIGNING_SECRET")
        return self

    def rate_limits(self) -> dict[str, RateLimit]:
        return {"buy": RateLimit(self.buy_limit_per_user, self.buy_limit_per_address)}

    def policy(self, provider: str) -> OrderPolicy:
        return OrderPolicy(
            payment_margin=timedelta(seconds=self.payment_margin_seconds),
            coupon_lock=timedelta(seconds=self.coupon_lock_seconds),
            auto_complete_after=timedelta(seconds=self.auto_complete_after_seconds),
            notify_url=f"{self.public_url.rstrip('/')}/v1/payments/{provider}/notifications",
        )
