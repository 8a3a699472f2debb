"""Who is calling: verified bearer JWTs turned into a typed :class:`Caller`.

Every HTTP request and gRPC call carries a token. Claims: ``sub`` (the user or service),
``roles`` (list of :class:`Role` values), ``merchant_id`` (the tenant; absent for platform
ops and for services acting for every tenant), ``iss``, ``aud``, ``exp``, ``iat``.
In development tokens are signed with a shared HS256 key and minted by
``livecommerce token``; in production the verifier takes the keys from a JWKS URL.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt

from services.kit.errors import (
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from services.kit.settings import ServiceSettings
from services.kit.tenancy import is_merchant_id


class Role(StrEnum):
    VIEWER = "viewer"
    HOST = "host"
    OPERATOR = "operator"
    MERCHANT_ADMIN = "merchant-admin"
    OPS = "ops"
    SERVICE = "service"


PLATFORM_ROLES = frozenset({Role.OPS, Role.SERVICE})


@dataclass(frozen=True)
class Caller:
    subject: str
    roles: frozenset[Role]
    merchant_id: str | None

    @property
    def is_platform(self) -> bool:
        """Platform ops and services may act for any merchant."""
        return bool(self.roles & PLATFORM_ROLES)

    def require_role(self, *allowed: Role) -> None:
        if not self.roles.intersection(allowed):
            wanted = ", ".join(sorted(r.value for r in allowed))
            raise PermissionDeniedError(f"this action needs one of the roles: {wanted}")

    def tenant(self) -> str:
        """The merchant the caller acts for; a caller bound to no merchant cannot act here."""
        if self.merchant_id is None:
            raise PermissionDeniedError("this action needs a merchant-scoped identity")
        return self.merchant_id

    def acting_for(self, requested: str, what: str) -> str:
        """The merchant a call acts for: the one it names, else the caller's own. Platform
        callers (services, ops) act for no merchant of their own, so they must name one; a
        merchant's user naming another merchant finds nothing (NotFoundError)."""
        if not requested and self.is_platform:
            raise InvalidArgumentError("merchant_id is required when a service or ops calls")
        merchant_id = requested or self.tenant()
        self.ensure_can_see(merchant_id, what)
        return merchant_id

    def ensure_can_see(self, merchant_id: str, what: str) -> None:
        """A resource of another merchant does not exist for this caller (404, not 403,
        so that ids of other tenants cannot be probed)."""
        if not self.is_platform and self.merchant_id != merchant_id:
            raise NotFoundError(f"{what} not found")


def _caller_from_claims(claims: dict[str, Any]) -> Caller:
    raw_roles = claims.get("roles", [])
    if not isinstance(raw_roles, list):
        raise UnauthenticatedError("token roles must be a list")
    try:
        roles = frozenset(Role(r) for r in raw_roles)
    except ValueError as error:
        raise UnauthenticatedError(f"token has an unknown role: {error}") from error
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise UnauthenticatedError("token has no subject")
    merchant = claims.get("merchant_id")
    if merchant is not None and not is_merchant_id(merchant):
        raise UnauthenticatedError("token merchant_id is not a valid merchant id")
    return Caller(subject=subject, roles=roles, merchant_id=merchant or None)


class TokenVerifier:
    """Verifies signature, algorithm, issuer, audience and expiry (with leeway).

    A verified token is remembered until it expires (at most ``cache_size`` of them), so a
    service calling with the same token thousands of times a second pays for the signature
    check once. A remembered token is still refused the moment it expires."""

    def __init__(self, settings: ServiceSettings, cache_size: int = 10_000) -> None:
        self._verified: dict[str, tuple[Caller, float]] = {}
        self._cache_size = cache_size
        self._algorithm = settings.jwt_algorithm
        self._key = settings.jwt_signing_key.get_secret_value()
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url) if settings.jwt_jwks_url else None

    def verify(self, token: str) -> Caller:
        remembered = self._verified.get(token)
        if remembered is not None:
            caller, expires = remembered
            if time.time() < expires + self._leeway:
                return caller
            del self._verified[token]
        caller, expires = self._verify(token)
        if len(self._verified) >= self._cache_size:
            self._verified.clear()
        self._verified[token] = (caller, expires)
        return caller

    def _verify(self, token: str) -> tuple[Caller, float]:
        try:
            key: Any = self._jwks.get_signing_key_from_jwt(token).key if self._jwks else self._key
            claims = jwt.decode(
                token,
                key,
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as error:
            raise UnauthenticatedError(f"invalid token: {error}") from error
        return _caller_from_claims(claims), float(claims["exp"])

    def verify_header(self, authorization: str | None) -> Caller:
        if not authorization:
            raise UnauthenticatedError("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise UnauthenticatedError("authorization must be 'Bearer <token>'")
        return self.verify(token.strip())


class TokenIssuer:
    """Mints tokens with the shared key: development tokens and service identities."""

    def __init__(self, settings: ServiceSettings) -> None:
        self._algorithm = settings.jwt_algorithm
        self._key = settings.jwt_signing_key.get_secret_value()
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience

    def mint(
        self,
        subject: str,
        roles: Iterable[Role],
        merchant_id: str | None = None,
        ttl_seconds: int = 3600,
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": subject,
            "roles": sorted(r.value for r in roles),
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "exp": now + ttl_seconds,
        }
        if merchant_id:
            claims["merchant_id"] = merchant_id
        return jwt.encode(claims, self._key, algorithm=self._algorithm)

    def service_token(self, service: str, ttl_seconds: int = 3600) -> str:
        return self.mint(f"service:{service}", [Role.SERVICE], ttl_seconds=ttl_seconds)


class ServiceIdentity:
    """A service's own bearer token for the calls it makes, minted once and renewed when
    half its life has passed (minting a JWT per call would cost the hot path)."""

    def __init__(self, settings: ServiceSettings, ttl_seconds: int = 3600) -> None:
        self._issuer = TokenIssuer(settings)
        self._service = settings.service_name
        self._ttl = ttl_seconds
        self._token = ""
        self._renew_at = 0.0

    def token(self) -> str:
        now = time.monotonic()
        if now >= self._renew_at:
            self._token = self._issuer.service_token(self._service, self._ttl)
            self._renew_at = now + self._ttl / 2
        return self._token
