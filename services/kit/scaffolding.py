"""Test scaffolding more than one service needs beyond :mod:`services.kit.testing`: a
database of its own for a test module, and an event envelope exactly as another service's
outbox relay publishes it (to feed a consumer's handlers through ``ConsumerRunner.apply``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from urllib.parse import urlsplit
from uuid import uuid4

import asyncpg
from google.protobuf.message import Message

from livecommerce.kit.v1.envelope_pb2 import Envelope
from services.kit.eventstore import StoredEvent
from services.kit.testing import unique


def database_url(dsn: str, name: str) -> str:
    """The same server and credentials, another database."""
    return urlsplit(dsn)._replace(path=f"/{name}").geturl()


@asynccontextmanager
async def throwaway_database(admin_dsn: str, prefix: str) -> AsyncIterator[str]:
    """Create a database named ``<prefix>_<random>``, yield its DSN, drop it (connections
    and all) on exit."""
    name = unique(prefix)
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(admin_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def envelope_of(
    message: Message,
    *,
    stream_id: str,
    version: int,
    aggregate_type: str,
    merchant_id: str,
    producer: str,
    occurred_at: datetime | None = None,
) -> Envelope:
    """``message`` in the envelope a relay publishes for the event at ``stream_id``/``version``."""
    return StoredEvent(
        position=0,
        stream_id=stream_id,
        version=version,
        event_id=uuid4(),
        event_type=message.DESCRIPTOR.full_name,
        aggregate_type=aggregate_type,
        merchant_id=merchant_id,
        occurred_at=occurred_at or datetime.now(UTC),
        correlation_id="",
        causation_id="",
        trace_context={},
        payload=message.SerializeToString(),
    ).to_envelope(producer)
