"""Bearer tokens as production verifies them: RS256 and ES256 keys from a JWKS endpoint
(served here on loopback), chosen by ``kid``, rotated by publishing several; every way a
token is refused (wrong audience, issuer, algorithm ``none`` or another one, expired,
unknown or missing key id, a key published for another algorithm), at the verifier and as
401 problem+json through the HTTP factory; service identities signed with a service's own
key; and settings that refuse what production must not run with."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import APIRouter
from pydantic import SecretStr, ValidationError

from services.kit.errors import UnauthenticatedError
from services.kit.http import CurrentCaller, create_app
from services.kit.identity import (
    IdentityConfigurationError,
    Role,
    ServiceIdentity,
    TokenIssuer,
    TokenVerifier,
)
from services.kit.settings import Environment, KafkaProfile, ServiceSettings
from tests.security.world import assert_problem

ISSUER = "https://idp.example"
AUDIENCE = "livecommerce"


@dataclass
class Jwks:
    """A JWKS endpoint on loopback whose published keys a test can change."""

    url: str = ""
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetches: int = 0

    def publish(self, kid: str, private_key: Any, algorithm: str) -> None:
        jwk = json.loads(
            jwt.algorithms.get_default_algorithms()[algorithm].to_jwk(private_key.public_key())
        )
        self.keys[kid] = {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}

    def withdraw(self, kid: str) -> None:
        del self.keys[kid]


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    published = Jwks()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            published.fetches += 1
            body = json.dumps({"keys": list(published.keys.values())}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    published.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield published
    finally:
        server.shutdown()
        server.server_close()


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def settings(jwks: Jwks, algorithm: str = "RS256", **changes: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "environment": Environment.TEST,
        "jwt_algorithm": algorithm,
        "jwt_jwks_url": jwks.url,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwt_leeway_seconds": 5,
        "jwt_jwks_min_refetch_seconds": 60,
    }
    return ServiceSettings(**{**values, **changes})


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "u-1",
        "roles": ["viewer"],
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
        **changes,
    }


def signed(key: Any, kid: str | None, algorithm: str = "RS256", **changes: Any) -> str:
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims(**changes), key, algorithm=algorithm, headers=headers)


def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(UnauthenticatedError) as error:
        verifier.verify(token)
    return error.value.detail


def test_verifies_rs256_and_es256_tokens_with_keys_from_the_jwks(jwks: Jwks) -> None:
    rsa_private, ec_private = rsa_key(), ec.generate_private_key(ec.SECP256R1())
    jwks.publish("rsa-1", rsa_private, "RS256")
    jwks.publish("ec-1", ec_private, "ES256")

    by_rsa = TokenVerifier(settings(jwks)).verify(signed(rsa_private, "rsa-1"))
    by_ec = TokenVerifier(settings(jwks, "ES256")).verify(signed(ec_private, "ec-1", "ES256"))

    assert by_rsa.subject == by_ec.subject == "u-1"
    assert by_rsa.roles == frozenset({Role.VIEWER})


def test_rotates_keys_by_kid_old_and_new_valid_together_then_the_old_one_withdrawn(
    jwks: Jwks,
) -> None:
    old, new = rsa_key(), rsa_key()
    jwks.publish("2026-01", old, "RS256")
    verifier = TokenVerifier(settings(jwks, jwt_jwks_min_refetch_seconds=0))
    assert verifier.verify(signed(old, "2026-01")).subject == "u-1"

    jwks.publish("2026-02", new, "RS256")  # a rotation: the new key appears beside the old
    assert verifier.verify(signed(new, "2026-02", sub="u-2")).subject == "u-2"
    assert verifier.verify(signed(old, "2026-01", sub="u-3")).subject == "u-3"

    jwks.withdraw("2026-01")
    fresh = TokenVerifier(settings(jwks))
    assert "unknown key" in refused(fresh, signed(old, "2026-01", sub="u-4"))


def test_a_flood_of_unknown_key_ids_refetches_the_jwks_at_most_once_a_minute(jwks: Jwks) -> None:
    key = rsa_key()
    jwks.publish("k1", key, "RS256")
    verifier = TokenVerifier(settings(jwks))
    verifier.verify(signed(key, "k1"))

    for n in range(50):
        refused(verifier, signed(key, f"forged-{n}", sub=f"u-{n}"))

    assert jwks.fetches == 1  # fetched less than a minute ago: no refetch for unknown kids


@pytest.mark.parametrize(
    ("what", "changes"),
    [
        ("audience", {"aud": "another-audience"}),
        ("issuer", {"iss": "https://another-idp.example"}),
        ("expired", {"exp": int(time.time()) - 60, "iat": int(time.time()) - 700}),
        ("issued in the future", {"iat": int(time.time()) + 600}),
    ],
)
def test_refuses_a_token_with_wrong_claims(jwks: Jwks, what: str, changes: dict[str, Any]) -> None:
    key = rsa_key()
    jwks.publish("k1", key, "RS256")

    assert refused(TokenVerifier(settings(jwks)), signed(key, "k1", **changes))


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_refuses_algorithm_none_even_with_a_known_kid(jwks: Jwks) -> None:
    jwks.publish("k1", rsa_key(), "RS256")
    unsigned = f"{_b64({'alg': 'none', 'kid': 'k1'})}.{_b64(claims())}."

    assert refused(TokenVerifier(settings(jwks)), unsigned)


def test_refuses_an_hs256_token_keyed_with_the_published_public_key(jwks: Jwks) -> None:
    """Algorithm confusion: the public key used as an HMAC secret."""
    key = rsa_key()
    jwks.publish("k1", key, "RS256")
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64({"alg": "HS256", "kid": "k1", "typ": "JWT"})
    payload = _b64(claims(roles=["ops"]))
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    assert refused(TokenVerifier(settings(jwks)), forged)


def test_refuses_a_token_whose_key_is_published_for_another_algorithm(jwks: Jwks) -> None:
    key = rsa_key()
    jwks.publish("k1", key, "RS512")

    assert "algorithm" in refused(TokenVerifier(settings(jwks)), signed(key, "k1"))


def test_refuses_a_token_that_names_no_key(jwks: Jwks) -> None:
    key = rsa_key()
    jwks.publish("k1", key, "RS256")

    assert "kid" in refused(TokenVerifier(settings(jwks)), signed(key, None))


def test_refuses_an_oversized_token(jwks: Jwks) -> None:
    key = rsa_key()
    jwks.publish("k1", key, "RS256")

    assert "too long" in refused(
        TokenVerifier(settings(jwks)), signed(key, "k1", padding="x" * 10_000)
    )


def test_refuses_a_user_token_that_claims_the_service_role(jwks: Jwks) -> None:
    key = rsa_key()
    jwks.publish("k1", key, "RS256")

    assert "service" in refused(
        TokenVerifier(settings(jwks)), signed(key, "k1", roles=["service"], sub="u-1")
    )


def test_a_service_signs_its_identity_with_its_own_key_published_in_the_jwks(jwks: Jwks) -> None:
    key = rsa_key()
    jwks.publish("order-2026-01", key, "RS256")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    order = settings(
        jwks,
        service_name="order",
        service_signing_key=SecretStr(pem),
        service_signing_key_id="order-2026-01",
    )

    caller = TokenVerifier(settings(jwks)).verify(ServiceIdentity(order).token())

    assert caller.subject == "service:order"
    assert caller.roles == frozenset({Role.SERVICE})
    assert caller.merchant_id is None


def test_an_asymmetric_deployment_without_a_service_key_fails_at_start(jwks: Jwks) -> None:
    with pytest.raises(IdentityConfigurationError):
        TokenIssuer(settings(jwks))
    with pytest.raises(IdentityConfigurationError):
        TokenVerifier(settings(jwks).model_copy(update={"jwt_jwks_url": None}))


async def test_every_refused_token_is_a_401_problem_through_http(jwks: Jwks) -> None:
    key, stranger = rsa_key(), rsa_key()
    jwks.publish("k1", key, "RS256")
    router = APIRouter()

    @router.get("/v1/me")
    async def me(caller: CurrentCaller) -> dict[str, str]:
        return {"subject": caller.subject}

    app = create_app(settings(jwks), title="tokens", routers=[router])
    bad = {
        "audience": signed(key, "k1", aud="elsewhere"),
        "issuer": signed(key, "k1", iss="https://evil.example"),
        "none": f"{_b64({'alg': 'none', 'kid': 'k1'})}.{_b64(claims())}.",
        "expired": signed(key, "k1", exp=int(time.time()) - 60, iat=int(time.time()) - 600),
        "stranger's key": signed(stranger, "k1"),
        "not a jwt": "abc.def",
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        good = await c.get("/v1/me", headers={"Authorization": f"Bearer {signed(key, 'k1')}"})
        answers = {
            what: await c.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
            for what, token in bad.items()
        }
        missing = await c.get("/v1/me")

    assert good.json() == {"subject": "u-1"}
    for what, answer in [*answers.items(), ("missing", missing)]:
        body = assert_problem(answer, 401)
        assert answer.headers["WWW-Authenticate"] == "Bearer", what
        assert "subject" not in body, what


PRODUCTION: dict[str, Any] = {
    "environment": Environment.PRODUCTION,
    "kafka_profile": KafkaProfile.KAFKA,
}


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        ({"jwt_algorithm": "RS256"}, "JWKS"),
        ({"jwt_algorithm": "RS256", "jwt_jwks_url": "http://idp/jwks.json"}, "https"),
        ({}, "development JWT signing key"),
        ({"jwt_algorithm": "none"}, "not supported"),
    ],
)
def test_production_settings_refuse_what_would_weaken_tokens(
    changes: dict[str, Any], refusal: str
) -> None:
    with pytest.raises(ValidationError, match=refusal):
        ServiceSettings(**{**PRODUCTION, **changes})


def test_production_runs_with_rs256_and_an_https_jwks() -> None:
    found = ServiceSettings(
        **PRODUCTION, jwt_algorithm="RS256", jwt_jwks_url="https://idp.example/jwks.json"
    )

    assert found.jwt_algorithm == "RS256"
