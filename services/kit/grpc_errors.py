"""The client side of the error mapping: a failed gRPC call back into a :class:`KitError`,
so that a service calling another reports the callee's refusal with the same meaning
(NOT_FOUND stays a 404, FAILED_PRECONDITION a 409) and a callee that cannot be reached
as UNAVAILABLE (503), never as a 500."""

from __future__ import annotations

import grpc

from services.kit import errors

_BY_CODE: dict[grpc.StatusCode, type[errors.KitError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: errors.NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: errors.PreconditionFailedError,
    grpc.StatusCode.ABORTED: errors.ConcurrencyError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhaustedError,
}


def error_from_rpc(error: grpc.aio.AioRpcError, callee: str) -> errors.KitError:
    """The KitError a failed call to ``callee`` means for this service's caller.

    The callee's own authentication problems (UNAUTHENTICATED, PERMISSION_DENIED) are this
    service's misconfiguration, not the caller's fault: they become UNAVAILABLE too."""
    kind = _BY_CODE.get(error.code())
    if kind is None:
        return errors.UnavailableError(f"{callee} is unavailable ({error.code().name})")
    return kind(error.details() or f"{callee} refused the call ({error.code().name})")
