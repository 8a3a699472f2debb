"""How the kit's Kafka clients connect: plaintext for the local broker, TLS and a SASL login
for a managed Kafka, the same options for producers, consumers and the admin client."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from services.kit.kafka import connection_options, consumer_options, producer_options
from services.kit.settings import KafkaSaslMechanism, KafkaSecurityProtocol, ServiceSettings

LOGIN: dict[str, Any] = {"kafka_sasl_username": "order", "kafka_sasl_password": SecretStr("s3cret")}


def test_the_local_broker_is_reached_in_plaintext_without_a_login() -> None:
    options = connection_options(ServiceSettings(kafka_bootstrap="b1:9092,b2:9092"))

    assert options == {"bootstrap_servers": "b1:9092,b2:9092", "security_protocol": "PLAINTEXT"}


def test_a_managed_kafka_gets_tls_and_the_sasl_login_in_every_client() -> None:
    settings = ServiceSettings(
        kafka_security_protocol=KafkaSecurityProtocol.SASL_SSL,
        kafka_sasl_mechanism=KafkaSaslMechanism.SCRAM_SHA_256,
        **LOGIN,
    )

    for options in (
        connection_options(settings),
        producer_options(settings),
        consumer_options(settings, "group"),
    ):
        assert options["security_protocol"] == "SASL_SSL"
        assert isinstance(options["ssl_context"], ssl.SSLContext)
        assert options["ssl_context"].verify_mode is ssl.CERT_REQUIRED
        assert options["sasl_mechanism"] == "SCRAM-SHA-256"
        assert options["sasl_plain_username"] == "order"
        assert options["sasl_plain_password"] == "s3cret"


def test_tls_without_a_login_verifies_the_brokers_and_sends_no_credentials() -> None:
    options = connection_options(ServiceSettings(kafka_security_protocol=KafkaSecurityProtocol.SSL))

    assert options["security_protocol"] == "SSL"
    assert options["ssl_context"].check_hostname is True
    assert "sasl_plain_password" not in options


@pytest.mark.parametrize("missing", ["kafka_sasl_username", "kafka_sasl_password"])
def test_a_sasl_protocol_without_its_login_is_refused_at_start(missing: str) -> None:
    login = {k: v for k, v in LOGIN.items() if k != missing}

    with pytest.raises(ValidationError, match="needs kafka_sasl_username and kafka_sasl_password"):
        ServiceSettings(kafka_security_protocol=KafkaSecurityProtocol.SASL_PLAINTEXT, **login)


def test_the_sasl_password_never_shows_in_the_settings() -> None:
    settings = ServiceSettings(kafka_security_protocol=KafkaSecurityProtocol.SASL_SSL, **LOGIN)

    assert "s3cret" not in repr(settings)
    assert "s3cret" not in settings.model_dump_json()
