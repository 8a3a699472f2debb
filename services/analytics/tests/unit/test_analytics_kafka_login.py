"""The stream processor connects to Kafka with the same TLS and SASL settings as the kit's
clients."""

from __future__ import annotations

import faust
from pydantic import SecretStr

from services.analytics.entrypoints.worker import faust_credentials
from services.analytics.settings import AnalyticsSettings
from services.kit.settings import KafkaSecurityProtocol


def test_the_stream_processor_logs_in_as_the_other_clients_do() -> None:
    assert faust_credentials(AnalyticsSettings()) is None
    tls = faust_credentials(AnalyticsSettings(kafka_security_protocol=KafkaSecurityProtocol.SSL))
    assert isinstance(tls, faust.SSLCredentials)
    sasl = faust_credentials(
        AnalyticsSettings(
            kafka_security_protocol=KafkaSecurityProtocol.SASL_SSL,
            kafka_sasl_username="order",
            kafka_sasl_password=SecretStr("s3cret"),
        )
    )
    assert isinstance(sasl, faust.SASLCredentials)
    assert (sasl.username, sasl.password, sasl.mechanism.value) == (
        "order",
        "s3cret",
        "SCRAM-SHA-512",
    )
    assert sasl.protocol.value == "SASL_SSL"
