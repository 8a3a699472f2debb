"""Nothing secret reaches the logs: the order API's log of requests carrying a bearer token
and notifications signed with the webhook secret (accepted, refused, and failing on a
dependency that is down) contains neither, nor the payment provider's API key. And every
service's settings refuse the development secrets in production and never show a secret
in their repr."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from services.analytics.settings import AnalyticsSettings
from services.inventory.settings import InventorySettings
from services.kit.identity import Role
from services.kit.settings import Environment, KafkaProfile, ServiceSettings
from services.kit.testclock import scratch_database
from services.kit.testing import StackEndpoints
from services.order.sandbox.settings import SandboxSettings
from services.order.settings import OrderSettings
from services.promotion.settings import PromotionSettings
from services.referral.settings import ReferralSettings
from services.room.settings import RoomSettings
from tests.security.world import token_for

ROOT = Path(__file__).resolve().parents[2]
SIGNING_SECRET = "webhook-secret-for-the-log-test-0123456789"
API_KEY = "sandbox-api-key-for-the-log-test-9876543210"


async def test_a_requests_bearer_token_and_the_webhook_secret_never_reach_the_log(
    stack: StackEndpoints,
) -> None:
    token = token_for(Role.VIEWER, "m1")
    async with scratch_database(stack, "order_logs") as dsn:
        env = {
            **os.environ,
            "ORDER_ENVIRONMENT": "test",
            "ORDER_POSTGRES_DSN": dsn,
            "ORDER_REDIS_URL": stack.redis_url,
            "ORDER_INVENTORY_TARGET": "127.0.0.1:9",  # down: the checkout fails and logs
            "ORDER_PROMOTION_TARGET": "127.0.0.1:9",
            "ORDER_RPC_TIMEOUT_SECONDS": "0.5",
            "ORDER_SANDBOX_SIGNING_SECRET": SIGNING_SECRET,
            "ORDER_SANDBOX_API_KEY": API_KEY,
            "SCENARIO_BEARER_TOKEN": token,
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.security.log_scenario",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    log = output.decode()

    assert process.returncode == 0, log[-3000:]
    assert log.count("\n") >= 3, log
    assert token not in log
    assert token.split(".")[2] not in log  # not even the signature part
    assert SIGNING_SECRET not in log
    assert API_KEY not in log


PRODUCTION: dict[str, Any] = {
    "environment": Environment.PRODUCTION,
    "kafka_profile": KafkaProfile.KAFKA,
    "jwt_signing_key": SecretStr("a-real-signing-key-from-a-kubernetes-secret"),
}
SERVICE_SETTINGS: list[tuple[type[ServiceSettings], dict[str, Any]]] = [
    (InventorySettings, {}),
    (PromotionSettings, {}),
    (
        OrderSettings,
        {"sandbox_api_key": SecretStr("real-key"), "sandbox_signing_secret": SecretStr("real")},
    ),
    (ReferralSettings, {"share_code_key": SecretStr("a-real-share-code-key")}),
    (
        RoomSettings,
        {
            "reminder_webhook_secret": SecretStr("a-real-webhook-secret"),
            "stream_key_secret": SecretStr("a-real-stream-key-secret"),
        },
    ),
    (AnalyticsSettings, {}),
    (SandboxSettings, {"api_key": SecretStr("real-key"), "signing_secret": SecretStr("real")}),
]


@pytest.fixture
def no_secrets_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.endswith(("_SECRET", "_KEY", "_ENVIRONMENT")):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_secrets_in_the_environment")
@pytest.mark.parametrize(("settings", "real_secrets"), SERVICE_SETTINGS)
def test_every_service_runs_in_production_with_real_secrets(
    settings: type[ServiceSettings], real_secrets: dict[str, Any]
) -> None:
    found = settings(**PRODUCTION, **real_secrets)

    assert found.environment is Environment.PRODUCTION


@pytest.mark.usefixtures("no_secrets_in_the_environment")
@pytest.mark.parametrize(("settings", "real_secrets"), SERVICE_SETTINGS)
def test_every_service_refuses_each_development_secret_in_production(
    settings: type[ServiceSettings], real_secrets: dict[str, Any]
) -> None:
    development = settings(environment=Environment.DEVELOPMENT)
    for field in ["jwt_signing_key", *real_secrets]:
        left_at_default = {**PRODUCTION, **real_secrets}
        left_at_default[field] = getattr(development, field)
        with pytest.raises(ValidationError):
            settings(**left_at_default)


@pytest.mark.parametrize(("settings", "real_secrets"), SERVICE_SETTINGS)
def test_no_secret_shows_in_a_services_settings_repr(
    settings: type[ServiceSettings], real_secrets: dict[str, Any]
) -> None:
    found: BaseModel = settings(**PRODUCTION, **real_secrets)
    shown = repr(found) + str(found.model_dump())

    for secret in [PRODUCTION["jwt_signing_key"], *real_secrets.values()]:
        assert secret.get_secret_value() not in shown
