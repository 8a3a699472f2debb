"""The in-memory event store holds to the event-store contract."""

from __future__ import annotations

import pytest

from services.kit.eventstore import EventStore, InMemoryEventStore
from services.kit.tests.eventstore_contract import EventStoreContract


class TestInMemoryEventStore(EventStoreContract):
    @pytest.fixture
    def store(self) -> EventStore:
        return InMemoryEventStore()
