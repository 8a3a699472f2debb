"""Bearer tokens: minted, verified, and every way a token is refused; callers' permissions."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from pydantic import SecretStr

from services.kit.errors import (
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from services.kit.identity import Caller, Role, TokenIssuer, TokenVerifier
from services.kit.settings import Environment, ServiceSettings

SIGNING_KEY = "unit-test-signing-key-that-is-long-enough-for-hs256-and-for-hs512-too"
OTHER_KEY = "another-unit-test-signing-key-long-enough-for-hs256-and-hs512-too"


def settings(**overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "environment": Environment.TEST,
        "jwt_signing_key": SecretStr(SIGNING_KEY),
        "jwt_issuer": "unit-issuer",
        "jwt_audience": "unit-audience",
        "jwt_leeway_seconds": 30,
    }
    values.update(overrides)
    return ServiceSettings(**values)


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(settings())


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer(settings())


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "sub": "user-1",
        "roles": ["viewer"],
        "iss": "unit-issuer",
        "aud": "unit-audience",
        "iat": now,
        "exp": now + 600,
    }
    values.update(overrides)
    return values


def signed(values: dict[str, Any], key: str = SIGNING_KEY, algorithm: str = "HS256") -> str:
    return jwt.encode(values, key, algorithm=algorithm)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unsigned(values: dict[str, Any]) -> str:
    """A token with ``alg: none`` and an empty signature."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(values)}."


def test_verifies_a_minted_token_into_its_caller(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.mint("user-42", [Role.HOST, Role.OPERATOR], merchant_id="merchant-1")

    caller = verifier.verify(token)

    assert caller == Caller(
        subject="user-42",
        roles=frozenset({Role.HOST, Role.OPERATOR}),
        merchant_id="merchant-1",
    )
    assert not caller.is_platform


def test_verifies_a_token_without_merchant_as_a_caller_bound_to_no_merchant(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    caller = verifier.verify(issuer.mint("ops-1", [Role.OPS]))

    assert caller.merchant_id is None
    assert caller.roles == frozenset({Role.OPS})
    assert caller.is_platform


def test_mints_service_tokens_as_platform_callers_named_after_the_service(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    caller = verifier.verify(issuer.service_token("orders"))

    assert caller == Caller(
        subject="service:orders", roles=frozenset({Role.SERVICE}), merchant_id=None
    )
    assert caller.is_platform


def test_accepts_a_token_expired_less_than_the_leeway_ago(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.mint("user-1", [Role.VIEWER], ttl_seconds=-10)

    assert verifier.verify(token).subject == "user-1"


def test_rejects_a_token_expired_longer_than_the_leeway_ago(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.mint("user-1", [Role.VIEWER], ttl_seconds=-120)

    with pytest.raises(UnauthenticatedError, match="expired"):
        verifier.verify(token)


def test_rejects_a_token_for_another_audience(verifier: TokenVerifier) -> None:
    token = TokenIssuer(settings(jwt_audience="another-audience")).mint("user-1", [Role.VIEWER])

    with pytest.raises(UnauthenticatedError, match="Audience doesn't match"):
        verifier.verify(token)


def test_rejects_a_token_from_another_issuer(verifier: TokenVerifier) -> None:
    token = TokenIssuer(settings(jwt_issuer="another-issuer")).mint("user-1", [Role.VIEWER])

    with pytest.raises(UnauthenticatedError, match="Invalid issuer"):
        verifier.verify(token)


def test_rejects_a_token_signed_with_another_key(verifier: TokenVerifier) -> None:
    token = TokenIssuer(settings(jwt_signing_key=SecretStr(OTHER_KEY))).mint("u", [Role.OPS])

    with pytest.raises(UnauthenticatedError, match="Signature verification failed"):
        verifier.verify(token)


def test_rejects_an_unsigned_token_with_algorithm_none(verifier: TokenVerifier) -> None:
    with pytest.raises(UnauthenticatedError, match="alg value is not allowed"):
        verifier.verify(unsigned(claims(roles=["ops"])))


def test_rejects_a_token_signed_with_another_algorithm_than_configured(
    verifier: TokenVerifier,
) -> None:
    token = signed(claims(roles=["ops"]), algorithm="HS512")

    with pytest.raises(UnauthenticatedError, match="alg value is not allowed"):
        verifier.verify(token)


def test_rejects_a_token_whose_payload_was_altered_after_signing(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    header, _, signature = issuer.mint("user-1", [Role.VIEWER]).split(".")
    forged = f"{header}.{_b64(claims(roles=['ops']))}.{signature}"

    with pytest.raises(UnauthenticatedError):
        verifier.verify(forged)


def test_rejects_a_string_that_is_not_a_token(verifier: TokenVerifier) -> None:
    with pytest.raises(UnauthenticatedError):
        verifier.verify("not-a-jwt")


@pytest.mark.parametrize("claim", ["sub", "exp", "iat", "iss", "aud"])
def test_rejects_a_token_missing_a_required_claim(verifier: TokenVerifier, claim: str) -> None:
    values = claims()
    del values[claim]

    with pytest.raises(UnauthenticatedError):
        verifier.verify(signed(values))


def test_rejects_a_token_with_an_empty_subject(verifier: TokenVerifier) -> None:
    with pytest.raises(UnauthenticatedError, match="subject"):
        verifier.verify(signed(claims(sub="")))


def test_rejects_a_token_with_an_unknown_role(verifier: TokenVerifier) -> None:
    with pytest.raises(UnauthenticatedError, match="unknown role"):
        verifier.verify(signed(claims(roles=["viewer", "superuser"])))


def test_rejects_a_token_whose_merchant_is_not_a_string(verifier: TokenVerifier) -> None:
    with pytest.raises(UnauthenticatedError, match="merchant_id"):
        verifier.verify(signed(claims(merchant_id=42)))


def test_rejects_a_token_whose_roles_claim_is_not_a_list(verifier: TokenVerifier) -> None:
    with pytest.raises(UnauthenticatedError):
        verifier.verify(signed(claims(roles=None)))


def test_reads_a_token_without_roles_as_a_caller_with_no_role(verifier: TokenVerifier) -> None:
    values = claims()
    del values["roles"]

    assert verifier.verify(signed(values)).roles == frozenset()


def test_verifies_the_token_of_a_bearer_authorization_header(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.mint("user-1", [Role.HOST], merchant_id="m-1")

    assert verifier.verify_header(f"Bearer {token}").subject == "user-1"
    assert verifier.verify_header(f"bearer {token}").merchant_id == "m-1"


@pytest.mark.parametrize("header", [None, ""])
def test_rejects_a_missing_authorization_header(
    verifier: TokenVerifier, header: str | None
) -> None:
    with pytest.raises(UnauthenticatedError, match="missing bearer token"):
        verifier.verify_header(header)


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc"])
def test_rejects_an_authorization_header_that_is_not_bearer_and_a_token(
    verifier: TokenVerifier, header: str
) -> None:
    with pytest.raises(UnauthenticatedError, match="Bearer <token>"):
        verifier.verify_header(header)


def merchant_admin(merchant_id: str | None = "merchant-1") -> Caller:
    return Caller("admin-1", frozenset({Role.MERCHANT_ADMIN}), merchant_id)


def test_lets_a_caller_with_one_of_the_allowed_roles_act() -> None:
    merchant_admin().require_role(Role.OPERATOR, Role.MERCHANT_ADMIN)


def test_refuses_a_caller_without_any_of_the_allowed_roles() -> None:
    caller = Caller("viewer-1", frozenset({Role.VIEWER}), "merchant-1")

    with pytest.raises(PermissionDeniedError, match="merchant-admin, operator") as refused:
        caller.require_role(Role.OPERATOR, Role.MERCHANT_ADMIN)

    assert refused.value.http_status == 403


def test_refuses_a_caller_with_no_roles_at_all() -> None:
    with pytest.raises(PermissionDeniedError):
        Caller("nobody", frozenset(), "merchant-1").require_role(Role.VIEWER)


def test_names_the_merchant_a_caller_acts_for() -> None:
    assert merchant_admin("merchant-9").tenant() == "merchant-9"


def test_refuses_a_merchant_scoped_action_to_a_caller_bound_to_no_merchant() -> None:
    with pytest.raises(PermissionDeniedError, match="merchant-scoped"):
        Caller("ops-1", frozenset({Role.OPS}), None).tenant()


def test_lets_a_caller_see_its_own_merchants_resources() -> None:
    merchant_admin("merchant-1").ensure_can_see("merchant-1", "order o-1")


@pytest.mark.parametrize("role", [Role.OPS, Role.SERVICE])
def test_lets_platform_callers_see_every_merchants_resources(role: Role) -> None:
    caller = Caller("platform", frozenset({role}), None)

    caller.ensure_can_see("merchant-1", "order o-1")
    caller.ensure_can_see("merchant-2", "order o-2")


def test_hides_another_merchants_resource_as_not_found() -> None:
    with pytest.raises(NotFoundError, match="order o-1 not found") as hidden:
        merchant_admin("merchant-1").ensure_can_see("merchant-2", "order o-1")

    assert hidden.value.http_status == 404


def test_hides_every_merchants_resources_from_a_non_platform_caller_without_merchant() -> None:
    with pytest.raises(NotFoundError):
        Caller("viewer-1", frozenset({Role.VIEWER}), None).ensure_can_see("merchant-1", "sku")


def test_a_remembered_token_is_still_refused_once_it_expires() -> None:
    settings = ServiceSettings(jwt_leeway_seconds=0)
    verifier = TokenVerifier(settings)
    token = TokenIssuer(settings).mint("u-1", [Role.VIEWER], "m-1", ttl_seconds=1)
    assert verifier.verify(token).subject == "u-1"
    assert verifier.verify(token).subject == "u-1"

    time.sleep(1.1)

    with pytest.raises(UnauthenticatedError, match="expired"):
        verifier.verify(token)


def test_a_call_acts_for_the_merchant_it_names_or_else_the_callers_own() -> None:
    service = Caller("service:order", frozenset({Role.SERVICE}), None)
    admin = Caller("u-1", frozenset({Role.MERCHANT_ADMIN}), "m-1")

    assert service.acting_for("m-2", "sale s") == "m-2"
    assert admin.acting_for("", "sale s") == "m-1"
    assert admin.acting_for("m-1", "sale s") == "m-1"
    with pytest.raises(InvalidArgumentError, match="merchant_id is required"):
        service.acting_for("", "sale s")
    with pytest.raises(NotFoundError, match="sale s not found"):
        admin.acting_for("m-2", "sale s")
