"""Settings shared by every service, read from the environment with one prefix per service.

A service subclasses :class:`ServiceSettings` and sets ``model_config`` with its own
``env_prefix`` (``INVENTORY_``, ``ORDER_`` ...). Defaults are the local stack's, so a
developer needs no environment at all; outside development the validators refuse the
development signing key.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_SIGNING_KEY = "livecommerce-development-signing-key-not-for-production"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class KafkaProfile(StrEnum):
    """``local`` is the memory-only Tansu broker; ``kafka`` is Apache Kafka (or compatible)."""

    LOCAL = "local"
    KAFKA = "kafka"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIVECOMMERCE_", extra="ignore")

    service_name: str = "kit"
    environment: Environment = Environment.DEVELOPMENT
    log_level: str = "INFO"

    postgres_dsn: str = "postgresql://postgres@127.0.0.1:55432/kit"
    postgres_pool_min: int = Field(default=1, ge=0)
    postgres_pool_max: int = Field(default=10, ge=1)
    redis_url: str = "redis://127.0.0.1:56379/0"

    kafka_bootstrap: str = "127.0.0.1:59092"
    kafka_profile: KafkaProfile = KafkaProfile.LOCAL
    kafka_partitions: int = Field(default=8, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_idempotence: bool | None = None
    """None means: on for real Kafka, off on the local broker (it lacks InitProducerId v3)."""

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    metrics_port: int | None = None
    """A separate Prometheus port for processes without HTTP (workers, gRPC servers)."""

    jwt_algorithm: str = "HS256"
    jwt_signing_key: SecretStr = SecretStr(DEVELOPMENT_SIGNING_KEY)
    jwt_jwks_url: str | None = None
    jwt_issuer: str = "livecommerce-dev"
    jwt_audience: str = "livecommerce"
    jwt_leeway_seconds: int = Field(default=30, ge=0)

    @model_validator(mode="after")
    def _refuse_development_secrets_outside_development(self) -> Self:
        if self.environment is Environment.PRODUCTION:
            if self.jwt_signing_key.get_secret_value() == DEVELOPMENT_SIGNING_KEY:
                raise ValueError(
                    "the development JWT signing key is refused in production; "
                    "set a real key or a JWKS URL"
                )
            if self.kafka_profile is KafkaProfile.LOCAL:
                raise ValueError("the local Kafka profile is for development only")
        return self

    @property
    def idempotent_producer(self) -> bool:
        if self.kafka_idempotence is not None:
            return self.kafka_idempotence
        return self.kafka_profile is KafkaProfile.KAFKA

    @property
    def events_topic(self) -> str:
        """The one topic this service publishes its events to."""
        return f"{self.service_name}.events"
