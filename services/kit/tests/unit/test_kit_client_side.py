"""What a service needs when it calls another: its own token, the callee's refusals back
as KitErrors, and timestamps on the wire."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest

from services.kit import errors
from services.kit.grpc_errors import error_from_rpc
from services.kit.identity import Role, ServiceIdentity, TokenVerifier
from services.kit.settings import ServiceSettings
from services.kit.wire import moment, timestamp


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgumentError),
        (grpc.StatusCode.NOT_FOUND, errors.NotFoundError),
        (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExistsError),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.PreconditionFailedError),
        (grpc.StatusCode.ABORTED, errors.ConcurrencyError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhaustedError),
    ],
)
def test_a_callees_refusal_keeps_its_meaning_and_its_words(
    code: grpc.StatusCode, expected: type[errors.KitError]
) -> None:
    mapped = error_from_rpc(_rpc_error(code, "sale s1 is closed"), "inventory")
    assert type(mapped) is expected
    assert mapped.detail == "sale s1 is closed"


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    ],
)
def test_a_callee_that_cannot_answer_or_refuses_our_identity_is_unavailable(
    code: grpc.StatusCode,
) -> None:
    mapped = error_from_rpc(_rpc_error(code, "boom"), "inventory")
    assert isinstance(mapped, errors.UnavailableError)
    assert "inventory" in mapped.detail


def test_a_service_identity_is_minted_once_and_verifies_as_that_service() -> None:
    settings = ServiceSettings(service_name="order")
    identity = ServiceIdentity(settings)
    token = identity.token()
    assert identity.token() == token
    caller = TokenVerifier(settings).verify(token)
    assert caller.subject == "service:order"
    assert caller.roles == frozenset({Role.SERVICE})


def test_a_timestamp_round_trips_to_the_microsecond() -> None:
    now = datetime(2026, 11, 22, 3, 4, 5, 678901, tzinfo=UTC)
    assert moment(timestamp(now)) == now
