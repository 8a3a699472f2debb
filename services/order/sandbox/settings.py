"""The sandbox gateway's settings: environment prefix ``SANDBOX_PAY_``.

It subclasses the kernel's :class:`ServiceSettings` so that the kernel's HTTP factory, pool
and process runner serve it unchanged; the Kafka, Redis and JWT fields it inherits are
unused. Its tables live in their own Postgres schema (``sandbox_pay``) of the order
service's database, so nothing of the order service's can collide with them.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.kit.settings import Environment, ServiceSettings

DEVELOPMENT_SANDBOX_SIGNING_SECRET = "sandbox-pay-development-signing-secret-not-for-production"  # noqa: S105 - refused in production
DEVELOPMENT_SANDBOX_API_KEY = "sandbox-pay-development-api-key"


class SandboxSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SANDBOX_PAY_", extra="ignore")

    service_name: str = "sandbox-pay"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:55432/order"
    postgres_schema: str = Field(default="sandbox_pay", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    """Every table of the sandbox is in this schema (created if missing)."""
    http_host: str = "127.0.0.1"
    http_port: int = 8190
    public_url: str | None = None
    """Where buyers reach this gateway (the base of ``pay_url``); by default
    ``http://{http_host}:{http_port}``."""

    api_key: SecretStr = SecretStr(DEVELOPMENT_SANDBOX_API_KEY)
    """The merchant API's bearer key (``Authorization: Bearer <api key>``)."""
    signing_secret: SecretStr = SecretStr(DEVELOPMENT_SANDBOX_SIGNING_SECRET)
    """The notification HMAC secret shared with the order service's adapter."""

    notify_max_attempts: int = Field(default=8, ge=1, le=100)
    """Deliveries of one notification, first included, before the sandbox gives up."""
    notify_backoff_initial_seconds: float = Field(default=1.0, gt=0)
    notify_backoff_max_seconds: float = Field(default=300.0, gt=0)
    notify_timeout_seconds: float = Field(default=5.0, gt=0)
    notify_poll_interval_seconds: float = Field(default=0.5, gt=0)
    notify_batch_size: int = Field(default=50, ge=1, le=1000)

    @model_validator(mode="after")
    def _refuse_development_sandbox_secrets_in_production(self) -> Self:
        if self.environment is Environment.PRODUCTION:
            if self.signing_secret.get_secret_value() == DEVELOPMENT_SANDBOX_SIGNING_SECRET:
                raise ValueError("the development sandbox signing secret is refused in production")
            if self.api_key.get_secret_value() == DEVELOPMENT_SANDBOX_API_KEY:
                raise ValueError("the development sandbox API key is refused in production")
        return self

    @property
    def pay_base_url(self) -> str:
        return (self.public_url or f"http://{self.http_host}:{self.http_port}").rstrip("/")
