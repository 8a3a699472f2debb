"""Errors every service raises, each mapped once to an HTTP status and a gRPC status.

A domain or application error subclasses one of these; the HTTP and gRPC entry points
translate them without any per-service mapping code. Standard library only, so that
domain modules may raise them. ``grpc_code`` is the name of a ``grpc.StatusCode``.
"""

from __future__ import annotations

from http import HTTPStatus


class KitError(Exception):
    """Base of every error that is the caller's to fix or to know about (never a 5xx)."""

    http_status: HTTPStatus = HTTPStatus.BAD_REQUEST
    grpc_code: str = "INVALID_ARGUMENT"
    title: str = "Bad request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidArgumentError(KitError):
    http_status = HTTPStatus.UNPROCESSABLE_ENTITY
    grpc_code = "INVALID_ARGUMENT"
    title = "Invalid argument"


class NotFoundError(KitError):
    http_status = HTTPStatus.NOT_FOUND
    grpc_code = "NOT_FOUND"
    title = "Not found"


class AlreadyExistsError(KitError):
    http_status = HTTPStatus.CONFLICT
    grpc_code = "ALREADY_EXISTS"
    title = "Already exists"


class PreconditionFailedError(KitError):
    """The request is well formed but the state does not allow it (sale closed, order paid)."""

    http_status = HTTPStatus.CONFLICT
    grpc_code = "FAILED_PRECONDITION"
    title = "Precondition failed"


class ConcurrencyError(KitError):
    """An append lost an optimistic-concurrency race: the stream moved on; reload and retry."""

    http_status = HTTPStatus.CONFLICT
    grpc_code = "ABORTED"
    title = "Concurrent modification"


class UnauthenticatedError(KitError):
    http_status = HTTPStatus.UNAUTHORIZED
    grpc_code = "UNAUTHENTICATED"
    title = "Unauthenticated"


class PermissionDeniedError(KitError):
    http_status = HTTPStatus.FORBIDDEN
    grpc_code = "PERMISSION_DENIED"
    title = "Permission denied"


class ResourceExhaustedError(KitError):
    """Too much, too fast: ``retry_after_seconds`` (when known) becomes the HTTP
    ``Retry-After`` header and the gRPC ``retry-after`` trailer."""

    http_status = HTTPStatus.TOO_MANY_REQUESTS
    grpc_code = "RESOURCE_EXHAUSTED"
    title = "Too many requests"

    def __init__(self, detail: str, retry_after_seconds: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class UnavailableError(KitError):
    """A dependency is down or the work could not be made durable: retry later. Nothing
    the caller was told has changed."""

    http_status = HTTPStatus.SERVICE_UNAVAILABLE
    grpc_code = "UNAVAILABLE"
    title = "Service unavailable"


class OutcomeUnknownError(UnavailableError):
    """The database went away while a write was committing (the connection lost after
    COMMIT was sent), and it could not be found out whether the write was recorded. Nothing
    the write stood for may be undone on the guess that it was not: a retry with the same
    ids finds out, and the services' sweepers settle what was never recorded."""
