from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.kit.settings import ServiceSettings


class PromotionSettings(ServiceSettings):
    """Environment prefix ``PROMOTION_``; defaults point at the local stack."""

    model_config = SettingsConfigDict(env_prefix="PROMOTION_", extra="ignore")

    service_name: str = "promotion"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:55432/promotion"
    http_port: int = 8103
    grpc_port: int = 50103
