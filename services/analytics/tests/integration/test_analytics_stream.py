"""The worker on the real broker: the scripted stream published to the five topics (names of
this test's own), consumed by the faust-streaming agent, the worker stopped mid-stream and
started again, an event published twice, and a replay from the earliest offsets by a new
consumer group: the review is exact every time."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from fastapi.encoders import jsonable_encoder

from livecommerce.kit.v1.envelope_pb2 import Envelope
from livecommerce.room.v1 import events_pb2 as room
from services.analytics.application.processor import BatchOutcome
from services.analytics.bootstrap import Analytics
from services.analytics.domain.review import review
from services.analytics.entrypoints.worker import running, stream_app
from services.analytics.settings import AnalyticsSettings
from services.analytics.tests import expected
from services.analytics.tests.script import TOPICS, Script
from services.kit.kafka import ensure_topics, new_producer
from services.kit.testing import eventually, unique
from services.kit.wire import timestamp

CATCH_UP = "the worker to catch up"


async def _applied(parts: Analytics, envelopes: Sequence[Envelope]) -> int:
    value = await parts.pool.fetchval(
        "SELECT count(*) FROM inbox WHERE consumer = 'analytics' AND event_id = ANY($1::uuid[])",
        [UUID(e.event_id) for e in envelopes],
    )
    return int(value)


async def _review_json(parts: Analytics, script: Script) -> object:
    snapshot = await parts.queries.room_snapshot(script.merchant, "r1")
    assert snapshot is not None
    return jsonable_encoder(asdict(review(snapshot, datetime.now(UTC))))


async def test_a_worker_restarted_mid_stream_and_a_replay_from_the_start_are_exact(
    parts: Analytics, analytics_settings: AnalyticsSettings, script: Script, tmp_path: Path
) -> None:
    prefix = unique("t")
    topics = {producer: f"{prefix}.{topic}" for producer, topic in TOPICS.items()}
    settings = analytics_settings.model_copy(
        update={
            "source_topics": list(topics.values()),
            "stream_app_id": unique("analytics"),
            "stream_session_timeout_seconds": 2.0,
            "stream_data_dir": str(tmp_path),
        }
    )
    await ensure_topics(settings, settings.source_topics)
    producer = new_producer(settings)
    await producer.start()

    async def publish(items: Sequence[tuple[str, Envelope]]) -> None:
        for name, envelope in items:
            await producer.send_and_wait(
                topics[name], envelope.SerializeToString(), key=envelope.aggregate_id.encode()
            )

    envelopes = [e for _, e in script.envelopes]
    half = len(script.envelopes) // 2
    try:
        await publish(script.envelopes[:half])
        async with running(stream_app(settings, parts.processor)):
            await eventually(lambda: _same(_applied(parts, envelopes[:half]), half), CATCH_UP)

        await publish(script.envelopes[half:])
        await publish(script.envelopes[3:4])  # the same event id again
        async with running(stream_app(settings, parts.processor)):
            await eventually(lambda: _same(_applied(parts, envelopes), len(envelopes)), CATCH_UP)
            after_restart = await _review_json(parts, script)
            latency = await _latency_of_one_comment(parts, script, publish)

        replay = settings.model_copy(update={"stream_app_id": unique("replay")})
        seen = BatchOutcome()
        async with running(stream_app(replay, parts.processor, seen.add)):
            published = len(envelopes) + 2  # the repeated event and the latency probe
            await eventually(lambda: _is(seen.duplicates, published), CATCH_UP)
            after_replay = await _review_json(parts, script)
    finally:
        await producer.stop()

    assert (seen.applied, seen.rejected) == (0, 0)
    assert after_restart == expected.review(script.merchant, script.t0)
    assert after_replay == after_restart
    assert latency < 2.0


async def _is(value: int, wanted: int) -> bool:
    return value == wanted


async def _same(count: Awaitable[int], wanted: int) -> bool:
    return await count == wanted


async def _latency_of_one_comment(
    parts: Analytics,
    script: Script,
    publish: Callable[[Sequence[tuple[str, Envelope]]], Awaitable[None]],
) -> float:
    """Seconds from publishing a comment in another room to the room's figures showing it."""
    script.emit(
        "room",
        "comment:r9:c-live",
        room.CommentPosted(
            room_id="r9", comment_id="c-live", viewer_id="v1", posted_at=timestamp(script.at(9))
        ),
        9,
    )
    started = time.monotonic()
    await publish(script.envelopes[-1:])

    async def shown() -> bool:
        return await parts.queries.room_version(script.merchant, "r9") is not None

    await eventually(shown, CATCH_UP, within=5)
    return time.monotonic() - started
