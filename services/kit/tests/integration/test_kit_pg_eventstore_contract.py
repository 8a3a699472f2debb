"""The Postgres event store holds to the event-store contract, on a fresh schema per test."""

from __future__ import annotations

import pytest

from services.kit.eventstore import EventStore, PostgresEventStore
from services.kit.testing import TestDatabase
from services.kit.tests.eventstore_contract import EventStoreContract


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, database: TestDatabase) -> EventStore:
        return PostgresEventStore(database.pool, "test")
