"""The analytics worker: a faust-streaming agent over every service's events topic that
folds each batch into the derived state in Postgres, and the live gauges.

Faust runs the consumer group, the assignment and the offset commits; it holds no state of
its own (no faust tables): the state is in Postgres, written with the events' inbox rows,
so a restart, a rebalance or a replay from the earliest offset is exact without changelog
topics (see docs/analytics.md for what faust's changelog tables do on the local broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import faust
from faust.types import StreamT
from tenacity import AsyncRetrying, stop_never, wait_exponential

from services.analytics.adapters.gauges import LiveGauges
from services.analytics.application.processor import BatchOutcome, Processor
from services.analytics.bootstrap import analytics
from services.analytics.settings import AnalyticsSettings
from services.kit import metrics
from services.kit.kafka import ensure_topics, tls_context
from services.kit.logging import get_logger
from services.kit.metrics import serve_metrics
from services.kit.runtime import run_all, run_periodically
from services.kit.settings import KafkaProfile

log = get_logger(__name__)

CONSUMER = "analytics"


def _record(outcome: BatchOutcome) -> None:
    for name in ("applied", "duplicates", "ignored", "rejected"):
        count = getattr(outcome, name)
        if count:
            label = {"duplicates": "duplicate", "rejected": "dead_lettered"}.get(name, name)
            metrics.CONSUMED.labels(CONSUMER, label).inc(count)


def faust_credentials(settings: AnalyticsSettings) -> faust.types.auth.CredentialsT | None:
    """The kit's Kafka login (``<PREFIX>_KAFKA_SECURITY_PROTOCOL`` and the rest) as faust
    takes it, so that the stream processor connects as every other client does."""
    protocol = settings.kafka_security_protocol
    context = tls_context(settings)
    if protocol.uses_sasl and settings.kafka_sasl_password is not None:
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism.value,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def stream_app(
    settings: AnalyticsSettings,
    processor: Processor,
    on_batch: Callable[[BatchOutcome], None] = _record,
) -> faust.App:
    """The faust application: one agent over the source topics, batches of raw envelopes.

    A batch that cannot be written (the database is down) is retried until it is: faust
    acknowledges a batch's offsets once the agent moves past it, so moving past an
    unwritten batch would lose it.
    """
    local = settings.kafka_profile is KafkaProfile.LOCAL
    session = settings.stream_session_timeout_seconds or (6.0 if local else 10.0)
    app = faust.App(
        settings.stream_app_id,
        broker=[f"kafka://{server}" for server in settings.kafka_bootstrap.split(",")],
        store="memory://",
        autodiscover=False,
        web_enabled=False,
        datadir=settings.stream_data_dir
        or str(Path(tempfile.gettempdir()) / f"faust-{settings.stream_app_id}"),
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=session,
        broker_heartbeat_interval=session / 6 if local else session / 3,
        broker_commit_interval=1.0,
        topic_partitions=settings.kafka_partitions,
        topic_replication_factor=settings.kafka_replication_factor,
        producer_acks=-1,
        broker_credentials=faust_credentials(settings),
    )
    topic = app.topic(
        *settings.source_topics,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    async def fold(stream: StreamT[bytes]) -> None:
        async for values in stream.take(settings.batch_size, within=settings.batch_within_seconds):
            async for attempt in AsyncRetrying(
                stop=stop_never, wait=wait_exponential(multiplier=0.1, max=5), reraise=True
            ):
                with attempt:
                    outcome = await processor.apply(values)
            on_batch(outcome)

    app.agent(topic, name=f"{settings.stream_app_id}.fold")(fold)
    return app


@contextlib.asynccontextmanager
async def running(app: faust.App) -> AsyncIterator[faust.App]:
    """Start the faust application inside the running event loop; stop it on exit."""
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


async def run_worker(settings: AnalyticsSettings, stop: asyncio.Event) -> None:
    serve_metrics(settings.metrics_port)
    await ensure_topics(settings, settings.source_topics)
    async with analytics(settings) as parts:
        app = stream_app(settings, parts.processor)
        gauges = LiveGauges(parts.pool)
        async with running(app):
            await run_all(
                stop,
                {
                    "stream": _until_crashed(app, stop),
                    "gauges": run_periodically(settings.live_gauge_seconds, stop, gauges.refresh),
                },
            )


async def _until_crashed(app: faust.App, stop: asyncio.Event) -> None:
    """Wait for the stop signal; fail (so the process manager restarts the worker) if
    faust crashed meanwhile."""
    while not stop.is_set():
        if app.crashed:
            raise RuntimeError("the stream processor (faust) crashed; see the log")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
