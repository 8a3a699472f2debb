"""Service settings: production refuses development secrets; Kafka producer defaults."""

from __future__ import annotations

import os

import pytest
from pydantic import SecretStr, ValidationError

from services.kit.settings import (
    DEVELOPMENT_SIGNING_KEY,
    Environment,
    KafkaProfile,
    ServiceSettings,
)

REAL_KEY = SecretStr("a-production-signing-key-that-nobody-else-knows")


@pytest.fixture(autouse=True)
def no_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests state every setting they rely on; none may leak in from the shell."""
    for name in list(os.environ):
        if name.startswith("LIVECOMMERCE_"):
            monkeypatch.delenv(name)


def test_defaults_to_development_with_the_development_signing_key() -> None:
    found = ServiceSettings()

    assert found.environment is Environment.DEVELOPMENT
    assert found.jwt_signing_key.get_secret_value() == DEVELOPMENT_SIGNING_KEY
    assert found.kafka_profile is KafkaProfile.LOCAL


def test_refuses_the_development_signing_key_in_production() -> None:
    with pytest.raises(ValidationError, match="development JWT signing key"):
        ServiceSettings(environment=Environment.PRODUCTION, kafka_profile=KafkaProfile.KAFKA)


def test_refuses_the_local_kafka_profile_in_production() -> None:
    with pytest.raises(ValidationError, match="local Kafka profile"):
        ServiceSettings(
            environment=Environment.PRODUCTION,
            jwt_signing_key=REAL_KEY,
            kafka_profile=KafkaProfile.LOCAL,
        )


def test_accepts_production_with_a_real_key_and_real_kafka() -> None:
    found = ServiceSettings(
        environment=Environment.PRODUCTION,
        jwt_signing_key=REAL_KEY,
        kafka_profile=KafkaProfile.KAFKA,
    )

    assert found.environment is Environment.PRODUCTION


def test_refuses_the_development_signing_key_when_production_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIVECOMMERCE_ENVIRONMENT", "production")
    monkeypatch.setenv("LIVECOMMERCE_KAFKA_PROFILE", "kafka")

    with pytest.raises(ValidationError, match="development JWT signing key"):
        ServiceSettings()


@pytest.mark.parametrize("environment", [Environment.DEVELOPMENT, Environment.TEST])
def test_accepts_the_development_secrets_outside_production(environment: Environment) -> None:
    found = ServiceSettings(environment=environment, kafka_profile=KafkaProfile.LOCAL)

    assert found.jwt_signing_key.get_secret_value() == DEVELOPMENT_SIGNING_KEY


def test_turns_the_idempotent_producer_off_on_the_local_broker_by_default() -> None:
    assert ServiceSettings(kafka_profile=KafkaProfile.LOCAL).idempotent_producer is False


def test_turns_the_idempotent_producer_on_for_real_kafka_by_default() -> None:
    assert ServiceSettings(kafka_profile=KafkaProfile.KAFKA).idempotent_producer is True


@pytest.mark.parametrize(
    ("profile", "idempotence"),
    [
        (KafkaProfile.LOCAL, True),
        (KafkaProfile.KAFKA, False),
    ],
)
def test_lets_an_explicit_setting_decide_the_idempotent_producer(
    profile: KafkaProfile, idempotence: bool
) -> None:
    found = ServiceSettings(kafka_profile=profile, kafka_idempotence=idempotence)

    assert found.idempotent_producer is idempotence


def test_names_the_events_topic_after_the_service() -> None:
    assert ServiceSettings(service_name="orders").events_topic == "orders.events"


def test_reads_settings_from_the_environment_with_the_service_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIVECOMMERCE_SERVICE_NAME", "payments")
    monkeypatch.setenv("LIVECOMMERCE_KAFKA_IDEMPOTENCE", "true")

    found = ServiceSettings()

    assert found.events_topic == "payments.events"
    assert found.idempotent_producer is True


def test_refuses_a_pool_maximum_below_one() -> None:
    with pytest.raises(ValidationError):
        ServiceSettings(postgres_pool_max=0)
