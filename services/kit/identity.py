"""Who is calling: verified bearer JWTs turned into a typed :class:`Caller`.

Every HTTP request and gRPC call carries a token. Claims: ``sub`` (the user or service),
``roles`` (list of :class:`Role` values), ``merchant_id`` (the tenant; absent for platform
ops and for services acting for every tenant), ``iss``, ``aud``, ``exp``, ``iat``.
In development tokens are signed with a shared HS256 key and minted by
``livecommerce token``; in production the verifier takes the keys from a JWKS URL
(RS256/ES256), each token naming its key by ``kid``, so keys rotate by publishing the new
key beside the old one, switching the signer, and dropping the old key once the tokens it
signed have expired. Only the configured algorithm is accepted (``none`` never), and a key
from the JWKS is used only for the algorithm it was published for.

Services call each other with a service identity (``sub: service:<name>``, role
``service``): a short-lived token the calling service signs itself, with the shared key in
development and with its own private key (``service_signing_key``, published in the JWKS)
where tokens are asymmetric. See docs/security.md for why tokens rather than mTLS.
"""

from __future__ import annotations

import threading
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
    UnavailableError,
)
from services.kit.settings import ASYMMETRIC_ALGORITHMS, ServiceSettings
from services.kit.tenancy import is_merchant_id


class Role(StrEnum):
    VIEWER = "viewer"
    HOST = "host"
    OPERATOR = "operator"
    MERCHANT_ADMIN = "merchant-admin"
    OPS = "ops"
    SERVICE = "service"


PLATFORM_ROLES = frozenset({Role.OPS, Role.SERVICE})
SERVICE_SUBJECT_PREFIX = "service:"
MAX_TOKEN_LENGTH = 8192
"""Longer bearer strings are refused before any parsing."""


class IdentityConfigurationError(ValueError):
    """Settings that cannot mint or verify tokens (a deployment mistake, found at start)."""


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
    if Role.SERVICE in roles and (not subject.startswith(SERVICE_SUBJECT_PREFIX) or merchant):
        raise UnauthenticatedError("a service token names a service:<name> and no merchant")
    return Caller(subject=subject, roles=roles, merchant_id=merchant or None)


class JwksKeys:
    """The verification keys of a JWKS URL, by key id.

    Keys are fetched once and trusted for ``refresh_seconds``; a token naming a key id not
    among them (a rotation just happened) refetches, but at most once every
    ``min_refetch_seconds``, so a flood of forged key ids costs the key server nothing.
    A key published for another algorithm than the configured one is never used."""

    def __init__(
        self, url: str, algorithm: str, refresh_seconds: float, min_refetch_seconds: float
    ) -> None:
        self._client = jwt.PyJWKClient(url, cache_keys=False, cache_jwk_set=False, timeout=5)
        self._algorithm = algorithm
        self._refresh = refresh_seconds
        self._min_refetch = min_refetch_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def key_for(self, token: str) -> Any:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as error:
            raise UnauthenticatedError(f"invalid token: {error}") from error
        if not isinstance(kid, str) or not kid:
            raise UnauthenticatedError("token names no signing key (kid)")
        now = time.monotonic()
        with self._lock:
            stale = now - self._fetched_at >= self._refresh
            if stale or (kid not in self._keys and now - self._fetched_at >= self._min_refetch):
                self._fetch(now)
            found = self._keys.get(kid)
        if found is None:
            raise UnauthenticatedError("token is signed with an unknown key")
        if found.algorithm_name != self._algorithm:
            raise UnauthenticatedError("token key is not for the configured algorithm")
        return found.key

    def _fetch(self, now: float) -> None:
        try:
            jwk_set = self._client.get_jwk_set(refresh=True)
        except jwt.PyJWKClientError as error:
            if self._keys:  # keep verifying with the keys we have; try again later
                self._fetched_at = now - self._refresh + self._min_refetch
                return
            raise UnavailableError(f"signing keys cannot be fetched: {error}") from error
        self._keys = {
            key.key_id: key
            for key in jwk_set.keys
            if key.key_id and (key.public_key_use in (None, "sig"))
        }
        self._fetched_at = now


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
        self._jwks: JwksKeys | None = None
        if settings.jwt_algorithm in ASYMMETRIC_ALGORITHMS:
            if not settings.jwt_jwks_url:
                raise IdentityConfigurationError(
                    f"{settings.jwt_algorithm} tokens need jwt_jwks_url to verify them"
                )
            self._jwks = JwksKeys(
                settings.jwt_jwks_url,
                settings.jwt_algorithm,
                settings.jwt_jwks_refresh_seconds,
                settings.jwt_jwks_min_refetch_seconds,
            )

    @property
    def may_block(self) -> bool:
        """True when verifying may fetch keys over the network (a JWKS): async callers then
        verify in a thread rather than stall their event loop."""
        return self._jwks is not None

    def verify(self, token: str) -> Caller:
        if len(token) > MAX_TOKEN_LENGTH:
            raise UnauthenticatedError("token is too long")
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
            key: Any = self._jwks.key_for(token) if self._jwks else self._key
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
    """Mints tokens: development tokens and service identities, with the shared key
    (HS256), or with the service's own private key and its key id (RS256/ES256)."""

    def __init__(self, settings: ServiceSettings) -> None:
        self._algorithm = settings.jwt_algorithm
        self._headers: dict[str, str] | None = None
        if settings.jwt_algorithm in ASYMMETRIC_ALGORITHMS:
            if settings.service_signing_key is None or not settings.service_signing_key_id:
                raise IdentityConfigurationError(
                    f"minting {settings.jwt_algorithm} tokens needs service_signing_key and"
                    " service_signing_key_id"
                )
            self._key = settings.service_signing_key.get_secret_value()
            self._headers = {"kid": settings.service_signing_key_id}
        else:
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
        return jwt.encode(claims, self._key, algorithm=self._algorithm, headers=self._headers)

    def service_token(self, service: str, ttl_seconds: int = 600) -> str:
        return self.mint(
            f"{SERVICE_SUBJECT_PREFIX}{service}", [Role.SERVICE], ttl_seconds=ttl_seconds
        )


class ServiceIdentity:
    """A service's own bearer token for the calls it makes, minted once and renewed when
    half its life has passed (minting a JWT per call would cost the hot path). Short-lived
    (10 minutes by default): a leaked service token is soon worthless."""

    def __init__(self, settings: ServiceSettings, ttl_seconds: int = 600) -> None:
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
