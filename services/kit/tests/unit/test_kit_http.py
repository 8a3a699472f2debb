"""The kernel's FastAPI app: problem+json errors, request ids, probes, metrics, the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
import structlog
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field, SecretStr

from services.kit import errors
from services.kit.context import current_context
from services.kit.errors import KitError
from services.kit.http import CurrentCaller, add_readiness_check, create_app
from services.kit.identity import Role, TokenIssuer
from services.kit.settings import Environment, ServiceSettings

SERVICE = "kit-unit-http"
SECRET = "the-database-password-is-hunter2"

SETTINGS = ServiceSettings(
    service_name=SERVICE,
    environment=Environment.TEST,
    jwt_signing_key=SecretStr("kit-unit-http-signing-key-long-enough-for-hs256-tokens"),
    jwt_issuer="kit-unit-http",
    jwt_audience="kit-unit-http",
)

KIT_ERRORS: dict[str, type[KitError]] = {
    cls.__name__: cls
    for cls in [
        KitError,
        errors.InvalidArgumentError,
        errors.NotFoundError,
        errors.AlreadyExistsError,
        errors.PreconditionFailedError,
        errors.ConcurrencyError,
        errors.UnauthenticatedError,
        errors.PermissionDeniedError,
        errors.ResourceExhaustedError,
        errors.UnavailableError,
    ]
}


class Widget(BaseModel):
    name: str = Field(min_length=1)
    quantity: int = Field(gt=0)


router = APIRouter()


@router.get("/errors/{name}")
async def raise_kit_error(name: str) -> None:
    raise KIT_ERRORS[name](f"detail of {name}")


@router.get("/crash")
async def crash() -> None:
    raise RuntimeError(f"connection failed: {SECRET}")


DATABASE_OUTAGES: dict[str, Exception] = {
    "refused": ConnectionRefusedError(111, f"Connect call failed {SECRET}"),
    "unreachable": OSError(f"Multiple exceptions: {SECRET}"),
    "timeout": TimeoutError(),
    "dropped": asyncpg.exceptions.ConnectionDoesNotExistError(
        f"connection was closed in the middle of operation {SECRET}"
    ),
    "closed": asyncpg.InterfaceError(f"connection is closed {SECRET}"),
    "starting": asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    "terminated": asyncpg.exceptions.AdminShutdownError("terminating connection"),
    "full": asyncpg.exceptions.TooManyConnectionsError("too many clients already"),
    "failure": asyncpg.exceptions.ConnectionFailureError("connection failure"),
}


@router.get("/database/{outage}")
async def lose_the_database(outage: str) -> None:
    raise DATABASE_OUTAGES[outage]


@router.get("/query-error")
async def bad_query() -> None:
    raise asyncpg.exceptions.UndefinedTableError(f"relation does not exist {SECRET}")


@router.post("/widgets")
async def create_widget(widget: Widget) -> dict[str, object]:
    return {"name": widget.name, "quantity": widget.quantity}


@router.get("/whoami")
async def whoami(caller: CurrentCaller) -> dict[str, object]:
    return {
        "subject": caller.subject,
        "roles": sorted(caller.roles),
        "merchant_id": caller.merchant_id,
    }


@router.get("/context")
async def context() -> dict[str, str]:
    found = current_context()
    return {"correlation_id": found.correlation_id, "causation_id": found.causation_id}


@pytest.fixture
def app() -> FastAPI:
    return create_app(SETTINGS, title="kit unit", routers=[router])


@pytest_asyncio.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://kit.test") as client:
        yield client


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Log entries, captured instead of rendered (rendering a traceback takes seconds)."""
    with structlog.testing.capture_logs() as captured:
        yield captured


def assert_problem(response: httpx.Response, status: int, title: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert body["title"] == title
    assert body["type"] == "about:blank"
    assert body["instance"] == response.request.url.path
    assert body["request_id"]
    return body


@pytest.mark.parametrize("name", list(KIT_ERRORS))
async def test_answers_each_kit_error_with_its_problem(
    client: httpx.AsyncClient, name: str
) -> None:
    error = KIT_ERRORS[name]("unused")

    response = await client.get(f"/errors/{name}")

    body = assert_problem(response, int(error.http_status), error.title)
    assert body["detail"] == f"detail of {name}"
    assert body["request_id"] == response.headers["x-request-id"]


async def test_asks_for_a_bearer_token_with_every_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/errors/UnauthenticatedError")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_asks_for_no_token_with_other_errors(client: httpx.AsyncClient) -> None:
    response = await client.get("/errors/PermissionDeniedError")

    assert response.status_code == 403
    assert "www-authenticate" not in response.headers


async def test_echoes_an_incoming_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/errors/NotFoundError", headers={"x-request-id": "req-123"})

    assert response.headers["x-request-id"] == "req-123"
    assert response.json()["request_id"] == "req-123"


async def test_gives_each_request_without_an_id_a_new_one(client: httpx.AsyncClient) -> None:
    first = await client.get("/healthz")
    second = await client.get("/healthz")

    assert first.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_cuts_an_overlong_incoming_request_id_to_128_characters(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/healthz", headers={"x-request-id": "r" * 500})

    assert response.headers["x-request-id"] == "r" * 128


async def test_makes_the_request_id_the_correlation_of_the_work_it_causes(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/context", headers={"x-request-id": "req-77"})

    assert response.json() == {"correlation_id": "req-77", "causation_id": "req-77"}


async def test_answers_an_unexpected_error_with_a_500_that_reveals_nothing(
    client: httpx.AsyncClient, logs: list[MutableMapping[str, Any]]
) -> None:
    response = await client.get("/crash", headers={"x-request-id": "req-crash"})

    body = assert_problem(response, 500, "Internal error")
    assert body["request_id"] == "req-crash"
    assert SECRET not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text
    assert "crash()" not in response.text


async def test_logs_an_unexpected_error_with_its_exception(
    client: httpx.AsyncClient, logs: list[MutableMapping[str, Any]]
) -> None:
    await client.get("/crash")

    [entry] = [e for e in logs if e["event"] == "unhandled error"]
    assert entry["log_level"] == "error"
    assert entry["path"] == "/crash"
    assert isinstance(entry["exc_info"], RuntimeError)


async def test_puts_the_request_id_header_on_a_500_too(
    client: httpx.AsyncClient, logs: list[MutableMapping[str, Any]]
) -> None:
    response = await client.get("/crash", headers={"x-request-id": "req-crash"})

    assert response.status_code == 500
    assert response.headers.get("x-request-id") == "req-crash"


@pytest.mark.parametrize("outage", list(DATABASE_OUTAGES))
async def test_answers_a_database_that_cannot_be_reached_with_a_503_to_retry(
    client: httpx.AsyncClient, logs: list[MutableMapping[str, Any]], outage: str
) -> None:
    response = await client.get(f"/database/{outage}", headers={"x-request-id": "req-down"})

    body = assert_problem(response, 503, "Service unavailable")
    assert body["detail"] == "the database is unavailable; retry later"
    assert body["request_id"] == response.headers["x-request-id"] == "req-down"
    assert SECRET not in response.text
    [entry] = [e for e in logs if e["event"] == "database unavailable"]
    assert (entry["log_level"], entry["path"]) == ("warning", f"/database/{outage}")


async def test_logs_each_server_error_it_answers_and_no_client_error(
    client: httpx.AsyncClient, logs: list[MutableMapping[str, Any]]
) -> None:
    await client.get("/errors/NotFoundError")
    response = await client.get("/errors/UnavailableError")

    assert response.status_code == 503
    [entry] = [e for e in logs if e["event"] == "answered with a server error"]
    assert (entry["log_level"], entry["status"], entry["error"]) == (
        "warning",
        503,
        "UnavailableError",
    )
    assert entry["detail"] == "detail of UnavailableError"


async def test_answers_a_database_error_that_is_no_outage_with_a_500_as_before(
    client: httpx.AsyncClient, logs: list[MutableMapping[str, Any]]
) -> None:
    response = await client.get("/query-error")

    assert_problem(response, 500, "Internal error")
    assert SECRET not in response.text


async def test_accepts_a_body_that_matches_the_schema(client: httpx.AsyncClient) -> None:
    response = await client.post("/widgets", json={"name": "lamp", "quantity": 2})

    assert response.status_code == 200
    assert response.json() == {"name": "lamp", "quantity": 2}


async def test_answers_a_body_that_does_not_match_the_schema_with_a_422_problem(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/widgets", json={"name": "", "quantity": 0})

    body = assert_problem(response, 422, "Invalid request")
    assert body["request_id"] == response.headers["x-request-id"]
    locations = [tuple(e["loc"]) for e in body["errors"]]  # type: ignore[attr-defined]
    assert sorted(locations) == [("body", "name"), ("body", "quantity")]


async def test_answers_a_body_that_is_not_json_with_a_422_problem(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/widgets", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert_problem(response, 422, "Invalid request")


async def test_answers_an_unknown_path_with_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/no-such-thing")

    body = assert_problem(response, 404, "Not Found")
    assert body["request_id"] == response.headers["x-request-id"]


async def test_answers_a_wrong_method_with_a_405_problem(client: httpx.AsyncClient) -> None:
    response = await client.delete("/widgets")

    assert_problem(response, 405, "Method Not Allowed")


async def test_reports_liveness(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_reports_ready_when_every_check_passes(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async def passes() -> None:
        return None

    add_readiness_check(app, "postgres", passes)
    add_readiness_check(app, "redis", passes)

    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": ["postgres", "redis"]}


async def test_reports_not_ready_with_the_failing_check(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async def passes() -> None:
        return None

    async def fails() -> None:
        raise ConnectionRefusedError("redis is down")

    add_readiness_check(app, "postgres", passes)
    add_readiness_check(app, "redis", fails)

    response = await client.get("/readyz")

    body = assert_problem(response, 503, "Not ready")
    assert body["checks"] == {"redis": "ConnectionRefusedError: redis is down"}


async def test_serves_prometheus_metrics_of_the_requests_it_answered(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/errors/NotFoundError")

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE livecommerce_http_requests_total counter" in response.text
    assert any(
        line.startswith("livecommerce_http_requests_total{")
        and f'service="{SERVICE}"' in line
        and 'route="/errors/{name}"' in line
        and 'status="404"' in line
        for line in response.text.splitlines()
    )


async def test_gives_a_route_the_caller_of_a_valid_token(client: httpx.AsyncClient) -> None:
    token = TokenIssuer(SETTINGS).mint("user-5", [Role.HOST, Role.VIEWER], merchant_id="m-5")

    response = await client.get("/whoami", headers={"authorization": f"Bearer {token}"})

    assert response.status_code == 200
    assert response.json() == {
        "subject": "user-5",
        "roles": ["host", "viewer"],
        "merchant_id": "m-5",
    }


async def test_refuses_a_route_that_needs_a_caller_without_a_token(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/whoami")

    body = assert_problem(response, 401, "Unauthenticated")
    assert body["detail"] == "missing bearer token"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_refuses_a_route_that_needs_a_caller_with_another_scheme(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/whoami", headers={"authorization": "Basic dXNlcjpwYXNz"})

    assert_problem(response, 401, "Unauthenticated")


async def test_refuses_a_route_that_needs_a_caller_with_an_invalid_token(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/whoami", headers={"authorization": "Bearer not.a.token"})

    assert_problem(response, 401, "Unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_refuses_a_token_signed_for_another_service_setup(
    client: httpx.AsyncClient,
) -> None:
    foreign = TokenIssuer(ServiceSettings(environment=Environment.TEST)).mint("u", [Role.OPS])

    response = await client.get("/whoami", headers={"authorization": f"Bearer {foreign}"})

    assert_problem(response, 401, "Unauthenticated")


async def test_carries_the_w3c_trace_context_of_a_request_into_its_message_context() -> None:
    seen: list[dict[str, str]] = []
    router = APIRouter()

    @router.get("/trace")
    async def trace() -> dict[str, str]:
        seen.append(dict(current_context().trace_context))
        return {}

    app = create_app(ServiceSettings(), title="t", routers=[router])
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        await client.get("/trace", headers={"traceparent": parent, "tracestate": "v=1"})
        await client.get("/trace")

    assert seen == [{"traceparent": parent, "tracestate": "v=1"}, {}]
