"""Kafka client settings and topic management, to the Kafka protocol only.

The same code runs on Apache Kafka and on the local memory-only broker; the profile only
changes timeouts (the local broker notices a departed group member only after the session
timeout, and does not wake a waiting fetch on new data) and whether the producer is
idempotent (the local broker cannot serve InitProducerId v3). Correctness never rests on
Kafka transactions: the outbox and the consumers' inbox give effectively-once.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, for_code
from aiokafka.helpers import create_ssl_context
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from services.kit.settings import KafkaProfile, ServiceSettings

_TOPIC_ALREADY_EXISTS = 36


def tls_context(settings: ServiceSettings) -> ssl.SSLContext | None:
    """The TLS context of a TLS listener (verifying the brokers against ``kafka_ssl_cafile``
    or the system's trust store), None for a plaintext one."""
    if not settings.kafka_security_protocol.uses_tls:
        return None
    context: ssl.SSLContext = create_ssl_context(cafile=settings.kafka_ssl_cafile)
    return context


def connection_options(settings: ServiceSettings) -> dict[str, Any]:
    """Where the brokers are and how to log in: every client of the kit takes these."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol.value,
    }
    context = tls_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol.uses_sasl and settings.kafka_sasl_password is not None:
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism.value
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def producer_options(settings: ServiceSettings) -> dict[str, Any]:
    return {
        **connection_options(settings),
        "client_id": settings.service_name,
        "acks": "all",
        "enable_idempotence": settings.idempotent_producer,
        "linger_ms": 2,
    }


def consumer_options(settings: ServiceSettings, group_id: str) -> dict[str, Any]:
    local = settings.kafka_profile is KafkaProfile.LOCAL
    return {
        **connection_options(settings),
        "client_id": f"{settings.service_name}-{group_id}",
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        # The local broker answers a waiting fetch only when the wait ends (new data does
        # not wake it): a short wait keeps events quick, and each idle consumer then asks
        # ten times a second. At 30 ms the idle stack's fetches alone took a quarter of a
        # core of the broker; 100 ms costs a third of that and adds at most 0.1 s a hop.
        "fetch_max_wait_ms": 100 if local else 500,
        "session_timeout_ms": 6000 if local else 10000,
        "heartbeat_interval_ms": 1000 if local else 3000,
        "max_poll_records": 500,
    }


def new_producer(settings: ServiceSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(**producer_options(settings))


def new_consumer(
    settings: ServiceSettings, group_id: str, topics: Sequence[str]
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **consumer_options(settings, group_id))


async def ensure_topics(
    settings: ServiceSettings, topics: Sequence[str], partitions: int | None = None
) -> None:
    """Create each topic with an explicit partition count if it does not exist.

    Never rely on auto-creation: brokers create auto topics with their own default count.
    Retries while the broker is still starting.
    """
    async for attempt in AsyncRetrying(
        stop=stop_after_delay(30),
        wait=wait_exponential(multiplier=0.1, max=2),
        retry=retry_if_exception_type((OSError, KafkaConnectionError)),
        reraise=True,
    ):
        with attempt:
            await _create_missing(settings, topics, partitions or settings.kafka_partitions)


async def _create_missing(
    settings: ServiceSettings, topics: Sequence[str], partitions: int
) -> None:
    admin = AIOKafkaAdminClient(
        **connection_options(settings), client_id=f"{settings.service_name}-admin"
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if not missing:
            return
        replication = settings.kafka_replication_factor
        response = await admin.create_topics(
            [
                NewTopic(t, num_partitions=partitions, replication_factor=replication)
                for t in missing
            ]
        )
        for topic, code, *_ in response.topic_errors:
            # 36 is TOPIC_ALREADY_EXISTS: another process created it after our listing.
            if code not in (0, _TOPIC_ALREADY_EXISTS):
                error: type[KafkaError] = for_code(code)
                raise error(f"cannot create topic {topic}")
    finally:
        await admin.close()
