from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.kit.settings import ServiceSettings


class InventorySettings(ServiceSettings):
    """Environment prefix ``INVENTORY_``; defaults point at the local stack."""

    model_config = SettingsConfigDict(env_prefix="INVENTORY_", extra="ignore")

    service_name: str = "inventory"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:55432/inventory"
    http_port: int = 8101
    grpc_port: int = 50101
    order_events_topic: str = "order.events"
    """The order service's topic: cancelled and refunded orders release their holds."""
    reserve_max_batch: int = Field(default=32, ge=1, le=4096)
    """At most this many reservations share one Redis pipeline and one group commit. Small
    enough that a process with a few dozen reservations in flight cuts them into batches
    whose group commits overlap (``reserve_group_commits``)."""
    reserve_group_commits: int = Field(default=2, ge=1, le=8)
    """Reservation batches recorded at once, each on a connection of its own: while one
    batch's transaction runs in Postgres (the sale's row lock orders them there), the
    process decides and prepares the next (docs/benchmarks.md, session 10)."""
    reserve_decide_interval_ms: float = Field(default=10.0, ge=0, le=100)
    """Under load, reservations are sent to Redis at most this often, one pipeline carrying
    all that arrived meanwhile (gRPC calls arrive one by one; a pipeline each cost more CPU
    than the decision), and the group commit follows with the same batch. An idle process
    sends at once. 0: no spacing. 10 against 6 doubled the batches under the bench's load
    and cut the server's CPU per reservation by about an eighth (595 to 521 µs on average,
    docs/benchmarks.md, session 15)."""
    sold_out_reply_interval_ms: float = Field(default=6.0, ge=0, le=100)
    """Under load, sold-out answers leave together at most this often: answered one by
    one, each costs the gRPC server about a third more CPU (docs/benchmarks.md, session 14).
    An idle process answers at once. 0: each at once."""
    sold_out_memory_seconds: float = Field(default=1.0, gt=0, le=60)
    """How long a process answers "sold out" from memory without asking Redis again."""
    sweep_interval_seconds: float = Field(default=1.0, gt=0)
    reconcile_interval_seconds: float = Field(default=30.0, gt=0)
    stream_stock_interval_seconds: float = Field(default=0.5, gt=0)
