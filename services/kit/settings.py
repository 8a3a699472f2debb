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
SYMMETRIC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class KafkaSecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def uses_sasl(self) -> bool:
        return self.name.startswith("SASL")

    @property
    def uses_tls(self) -> bool:
        return self.name.endswith("SSL")


class KafkaSaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


class KafkaProfile(StrEnum):
    """``local`` is the memory-only Tansu broker; ``kafka`` is Apache Kafka (or compatible)."""

    LOCAL = "local"
    KAFKA = "kafka"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIVECOMMERCE_", extra="ignore")

    service_name: str = "kit"
    environment: Environment = Environment.DEVELOPMENT
    log_level: str = "INFO"
    gc_young_threshold: int = Field(default=5_000, ge=700, le=1_000_000)
    """Allocations between two collections of the youngest garbage-collector generation
    (Python's default is 700): fewer collections cost less CPU, but each pauses the event
    loop for longer; see :func:`services.kit.runtime.tune_garbage_collector`."""

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
    kafka_security_protocol: KafkaSecurityProtocol = KafkaSecurityProtocol.PLAINTEXT
    """How clients connect: SSL (TLS), SASL_SSL (TLS and a login, what managed Kafka asks
    for), SASL_PLAINTEXT, or PLAINTEXT (the local broker, a trusted in-cluster listener)."""
    kafka_sasl_mechanism: KafkaSaslMechanism = KafkaSaslMechanism.SCRAM_SHA_512
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    """A CA bundle for the brokers' certificates; unset: the system's trust store."""

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    http_max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    """Larger request bodies are refused (413) before they are read."""
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    grpc_max_message_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Larger gRPC requests are refused (RESOURCE_EXHAUSTED) before they are parsed."""
    rate_limit_exempt_networks: list[str] | None = None
    """Client networks no per-address rate limit applies to (per-user limits still do).
    Unset: loopback in development (local load generators measure the service, not the
    limiter), none anywhere else."""
    http_keep_alive_seconds: int = Field(default=75, ge=1, le=3600)
    """How long an idle HTTP connection stays open (above the clients' own idle limit)."""
    metrics_port: int | None = None
    """A separate Prometheus port for processes without HTTP (workers, gRPC servers)."""

    jwt_algorithm: str = "HS256"
    """The one algorithm tokens may be signed with (``none`` never): HS256 with the shared
    ``jwt_signing_key``, or RS256/ES256 (and their kin) with keys from ``jwt_jwks_url``."""
    jwt_signing_key: SecretStr = SecretStr(DEVELOPMENT_SIGNING_KEY)
    jwt_jwks_url: str | None = None
    jwt_jwks_refresh_seconds: float = Field(default=300.0, gt=0)
    """How long fetched keys are trusted; an unknown key id refetches at most once a
    ``jwt_jwks_min_refetch_seconds`` (so forged key ids cannot flood the key server)."""
    jwt_jwks_min_refetch_seconds: float = Field(default=30.0, ge=0)
    jwt_issuer: str = "livecommerce-dev"
    jwt_audience: str = "livecommerce"
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    service_signing_key: SecretStr | None = None
    """With an asymmetric ``jwt_algorithm``: the PEM private key this service signs its own
    service-identity tokens with; its public half is published in the JWKS under
    ``service_signing_key_id``."""
    service_signing_key_id: str = ""

    @model_validator(mode="after")
    def _check_token_algorithm(self) -> Self:
        if self.jwt_algorithm not in SYMMETRIC_ALGORITHMS | ASYMMETRIC_ALGORITHMS:
            raise ValueError(f"jwt_algorithm {self.jwt_algorithm!r} is not supported")
        return self

    @model_validator(mode="after")
    def _check_kafka_login(self) -> Self:
        has_login = bool(self.kafka_sasl_username) and self.kafka_sasl_password is not None
        if self.kafka_security_protocol.uses_sasl and not has_login:
            raise ValueError(
                f"kafka_security_protocol {self.kafka_security_protocol} needs"
                " kafka_sasl_username and kafka_sasl_password"
            )
        return self

    @model_validator(mode="after")
    def _refuse_development_secrets_outside_development(self) -> Self:
        if self.environment is Environment.PRODUCTION:
            if self.jwt_algorithm in ASYMMETRIC_ALGORITHMS:
                if not self.jwt_jwks_url or not self.jwt_jwks_url.startswith("https://"):
                    raise ValueError(f"{self.jwt_algorithm} in production needs an https JWKS URL")
            elif self.jwt_signing_key.get_secret_value() == DEVELOPMENT_SIGNING_KEY:
                raise ValueError(
                    "the development JWT signing key is refused in production; "
                    "set a real key or a JWKS URL"
                )
            if self.kafka_profile is KafkaProfile.LOCAL:
                raise ValueError("the local Kafka profile is for development only")
        return self

    @property
    def exempt_networks(self) -> list[str]:
        if self.rate_limit_exempt_networks is not None:
            return self.rate_limit_exempt_networks
        if self.environment is Environment.DEVELOPMENT:
            return ["127.0.0.0/8", "::1/128"]
        return []

    @property
    def idempotent_producer(self) -> bool:
        if self.kafka_idempotence is not None:
            return self.kafka_idempotence
        return self.kafka_profile is KafkaProfile.KAFKA

    @property
    def events_topic(self) -> str:
        """The one topic this service publishes its events to."""
        return f"{self.service_name}.events"
