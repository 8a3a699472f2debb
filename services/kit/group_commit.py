"""Group commit of independent appends: many concurrent requests, one transaction a batch.

For appends that do not depend on each other (a viewer's visit, a comment, a reminder: each
its own stream). Requests submit concurrently; a :class:`~services.kit.batching.MicroBatcher`
cuts the batches; each batch is one transaction that appends every item's events and runs
``write`` for the items' own rows (read models, claims) in the same transaction. If the
batch fails on one item (a stream that moved on, a duplicate row), the items are retried one
transaction each, so only the item at fault fails. A database outage fails the whole batch
with UnavailableError: nothing was written. An outage during COMMIT itself is settled by
asking the event store whether the batch was recorded: if it was, the batch succeeds; if
that cannot be found out, every item fails with OutcomeUnknownError.

Each item's events carry the message context of the request that submitted it, not that of
the request that happened to start the batch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Generic, TypeVar

import asyncpg

from services.kit.batching import MicroBatcher
from services.kit.context import current_context
from services.kit.db import Connection, database_outage
from services.kit.errors import UnavailableError
from services.kit.eventstore import PostgresEventStore, StoredEvent, StreamAppend

T = TypeVar("T")

Write = Callable[[Connection, Sequence[T]], Awaitable[None]]


class GroupCommit(Generic[T]):
    def __init__(
        self,
        pool: asyncpg.Pool,
        store: PostgresEventStore,
        *,
        append_of: Callable[[T], StreamAppend],
        write: Write[T] | None = None,
        max_batch: int = 256,
        name: str = "group_commit",
    ) -> None:
        """``append_of`` gives an item's events; ``write`` (optional) writes the rows the
        items imply, in the append's transaction, raising to refuse the batch; ``name``
        labels its batch sizes."""
        self._pool = pool
        self._store = store
        self._append_of = append_of
        self._write = write
        self._batcher: MicroBatcher[tuple[T, StreamAppend], list[StoredEvent]] = MicroBatcher(
            self._flush, max_batch=max_batch, name=name
        )

    async def commit(self, item: T) -> list[StoredEvent]:
        """Make ``item`` durable together with whatever else is waiting; its stored events."""
        append = self._append_of(item)
        if append.context is None:
            append = replace(append, context=current_context())
        return await self._batcher.submit((item, append))

    async def _flush(
        self, batch: Sequence[tuple[T, StreamAppend]]
    ) -> Sequence[list[StoredEvent] | BaseException]:
        try:
            stored = await self._transaction(batch)
        except UnavailableError:  # not recorded, or not known to be: not item by item
            raise
        except Exception as error:
            if (outage := database_outage(error)) is not None:
                raise outage from error
            if len(batch) == 1:
                return [error]
            return [await self._alone(entry) for entry in batch]
        results: list[list[StoredEvent] | BaseException] = []
        start = 0
        for _, append in batch:  # the store returns the events in the order given
            results.append(stored[start : start + len(append.events)])
            start += len(append.events)
        return results

    async def _alone(self, entry: tuple[T, StreamAppend]) -> list[StoredEvent] | BaseException:
        try:
            return await self._transaction([entry])
        except UnavailableError as error:
            return error
        except Exception as error:
            outage = database_outage(error)
            return outage if outage is not None else error

    async def _transaction(self, batch: Sequence[tuple[T, StreamAppend]]) -> list[StoredEvent]:
        async def statements(conn: Connection) -> list[StoredEvent]:
            # The rows first, the append last: appending takes the event store's position
            # lock, which every writer of the database waits for until this commits.
            if self._write is not None:
                await self._write(conn, [item for item, _ in batch])
            return await self._store.append(
                [append for _, append in batch], conn=conn, savepoint=False
            )

        return await self._store.settled_transaction(self._pool.acquire(), statements)
