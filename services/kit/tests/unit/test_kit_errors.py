"""Every kernel error maps to one client-error HTTP status and one real gRPC status code."""

from __future__ import annotations

from http import HTTPStatus

import grpc
import pytest

from services.kit import errors
from services.kit.errors import KitError

EXPECTED: dict[type[KitError], tuple[HTTPStatus, grpc.StatusCode]] = {
    KitError: (HTTPStatus.BAD_REQUEST, grpc.StatusCode.INVALID_ARGUMENT),
    errors.InvalidArgumentError: (
        HTTPStatus.UNPROCESSABLE_ENTITY,
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    errors.NotFoundError: (HTTPStatus.NOT_FOUND, grpc.StatusCode.NOT_FOUND),
    errors.AlreadyExistsError: (HTTPStatus.CONFLICT, grpc.StatusCode.ALREADY_EXISTS),
    errors.PreconditionFailedError: (HTTPStatus.CONFLICT, grpc.StatusCode.FAILED_PRECONDITION),
    errors.ConcurrencyError: (HTTPStatus.CONFLICT, grpc.StatusCode.ABORTED),
    errors.UnauthenticatedError: (HTTPStatus.UNAUTHORIZED, grpc.StatusCode.UNAUTHENTICATED),
    errors.PermissionDeniedError: (HTTPStatus.FORBIDDEN, grpc.StatusCode.PERMISSION_DENIED),
    errors.ResourceExhaustedError: (
        HTTPStatus.TOO_MANY_REQUESTS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    ),
    errors.UnavailableError: (HTTPStatus.SERVICE_UNAVAILABLE, grpc.StatusCode.UNAVAILABLE),
    errors.OutcomeUnknownError: (HTTPStatus.SERVICE_UNAVAILABLE, grpc.StatusCode.UNAVAILABLE),
}


def defined_in_errors_module() -> set[type[KitError]]:
    found: set[type[KitError]] = set()
    pending: list[type[KitError]] = [KitError]
    while pending:
        cls = pending.pop()
        if cls.__module__ == errors.__name__:
            found.add(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_the_mapping_table_covers_every_error_of_the_kernel() -> None:
    assert defined_in_errors_module() == set(EXPECTED)


@pytest.mark.parametrize("error_type", list(EXPECTED), ids=lambda t: t.__name__)
def test_maps_each_error_to_its_http_status_and_grpc_code(error_type: type[KitError]) -> None:
    error = error_type("what went wrong")
    http_status, grpc_code = EXPECTED[error_type]

    assert error.http_status == http_status
    assert grpc.StatusCode[error.grpc_code] == grpc_code


CLIENT_ERRORS = [e for e in EXPECTED if not issubclass(e, errors.UnavailableError)]


@pytest.mark.parametrize("error_type", CLIENT_ERRORS, ids=lambda t: t.__name__)
def test_maps_each_error_to_a_client_error_never_a_server_error(
    error_type: type[KitError],
) -> None:
    error = error_type("detail")

    assert 400 <= int(error.http_status) < 500
    assert grpc.StatusCode[error.grpc_code] not in {
        grpc.StatusCode.OK,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    }


@pytest.mark.parametrize("error_type", list(EXPECTED), ids=lambda t: t.__name__)
def test_keeps_the_detail_and_gives_every_error_a_title(error_type: type[KitError]) -> None:
    error = error_type("SKU abc not found")

    assert error.detail == "SKU abc not found"
    assert str(error) == "SKU abc not found"
    assert error.title


def test_an_outage_is_a_retryable_503_not_a_crash() -> None:
    error = errors.UnavailableError("the database is down")

    assert error.http_status == HTTPStatus.SERVICE_UNAVAILABLE
    assert grpc.StatusCode[error.grpc_code] == grpc.StatusCode.UNAVAILABLE
