from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from services.kit.settings import ServiceSettings


class InventorySettings(ServiceSettings):
    """Environment prefix ``INVENTORY_``; defaults point at the local stack."""

    model_config = SettingsConfigDict(env_prefix="INVENTORY_", extra="ignore")

    service_name: str = "inventory"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:55432/inventory"
    http_port: int = 8101
    grpc_port: int = 50101
