"""Where the local stack lives and which ports it uses (overridable from the environment)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVICE_DATABASES = ("inventory", "order", "promotion", "room", "referral", "analytics")
TEST_DATABASE = "kit_test"


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass(frozen=True)
class ServiceProcess:
    """One process of a service, as supervisord runs it."""

    service: str
    role: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.service}-{self.role}"


@dataclass(frozen=True)
class StackConfig:
    root: Path = ROOT
    pg_port: int = field(default_factory=lambda: _port("LIVECOMMERCE_PG_PORT", 55432))
    redis_port: int = field(default_factory=lambda: _port("LIVECOMMERCE_REDIS_PORT", 56379))
    kafka_port: int = field(default_factory=lambda: _port("LIVECOMMERCE_KAFKA_PORT", 59092))
    backend: str = field(default_factory=lambda: os.environ.get("LIVECOMMERCE_STACK", "local"))
    """``local``: processes under supervisord (no Docker); ``compose``: Postgres, Redis and
    Apache Kafka from deploy/compose.yaml on a Docker engine, the services still local."""

    def __post_init__(self) -> None:
        if self.backend not in ("local", "compose"):
            raise ValueError(f"LIVECOMMERCE_STACK must be local or compose, not {self.backend!r}")

    @property
    def kafka_profile(self) -> str:
        return "local" if self.backend == "local" else "kafka"

    @property
    def compose_file(self) -> Path:
        return self.root / "deploy" / "compose.yaml"

    @property
    def state(self) -> Path:
        return self.root / ".stack"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def supervisor_conf(self) -> Path:
        return self.state / "supervisord.conf"

    @property
    def supervisor_socket(self) -> Path:
        return self.state / "supervisor.sock"

    @property
    def supervisor_pidfile(self) -> Path:
        return self.state / "supervisord.pid"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def postgres_dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{database}"

    @property
    def services(self) -> list[ServiceProcess]:
        """The service processes `make up` and `make demo` run, with their ports."""
        return [
            ServiceProcess("inventory", "api", {"INVENTORY_HTTP_PORT": "8101"}),
            ServiceProcess(
                "inventory",
                "grpc",
                {"INVENTORY_GRPC_PORT": "50101", "INVENTORY_METRICS_PORT": "9102"},
            ),
            ServiceProcess("inventory", "worker", {"INVENTORY_METRICS_PORT": "9101"}),
            ServiceProcess(
                "promotion",
                "grpc",
                {"PROMOTION_GRPC_PORT": "50103", "PROMOTION_METRICS_PORT": "9103"},
            ),
            ServiceProcess("promotion", "api", {"PROMOTION_HTTP_PORT": "8103"}),
            ServiceProcess("promotion", "worker", {"PROMOTION_METRICS_PORT": "9105"}),
            ServiceProcess(
                "order",
                "sandbox",
                {
                    "SANDBOX_PAY_HTTP_PORT": "8190",
                    "SANDBOX_PAY_POSTGRES_DSN": self.postgres_dsn("order"),
                },
            ),
            ServiceProcess("order", "api", {"ORDER_HTTP_PORT": "8102"}),
            ServiceProcess("order", "worker", {"ORDER_METRICS_PORT": "9104"}),
            ServiceProcess("room", "api", {"ROOM_HTTP_PORT": "8105"}),
            ServiceProcess("room", "worker", {"ROOM_METRICS_PORT": "9107"}),
            ServiceProcess("referral", "api", {"REFERRAL_HTTP_PORT": "8106"}),
            ServiceProcess("referral", "worker", {"REFERRAL_METRICS_PORT": "9106"}),
            ServiceProcess("analytics", "api", {"ANALYTICS_HTTP_PORT": "8107"}),
            ServiceProcess("analytics", "worker", {"ANALYTICS_METRICS_PORT": "9108"}),
        ]

    def service_env(self, service: str) -> dict[str, str]:
        """The environment that points a service at this stack."""
        prefix = service.upper() + "_"
        return {
            prefix + "POSTGRES_DSN": self.postgres_dsn(service),
            prefix + "REDIS_URL": self.redis_url,
            prefix + "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            prefix + "KAFKA_PROFILE": self.kafka_profile,
        }
