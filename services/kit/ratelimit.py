"""Abuse limits: per-user and per-client-address rate limits in Redis, shared by every
replica of a service.

The counting is a moving window per key (the accepted attempts' times, newest first, at
most the limit long): ``lua/ratelimit.lua`` records the attempt and decides in one atomic
step, so replicas racing on one key never let more than the limit through, and the window
slides (no burst of twice the limit at a window's edge, as fixed windows allow). A check's
two keys (the user's and the address's) are sent in one pipeline: one round trip. A service
names its actions (``buy``, ``comment``) and gives each a per-user and a per-address limit
in the ``limits`` notation (``"10/10 seconds"``, ``"600/minute"``, parsed by the ``limits``
library); an HTTP route takes :func:`limit_rate` as a dependency. A refusal is
:class:`RateLimitedError`: 429 problem+json with ``Retry-After``.

Counted by hand rather than with ``limits``' own Redis strategy (the same moving window):
that strategy makes one round trip per key, two per check and a third for a refusal's
Retry-After, and it cost the caller 99-116 µs of CPU per check against 68-84 µs here, on
the buy route, the hottest public route of a flash sale (``python -m bench.rate_limits``,
docs/benchmarks.md).

An attempt a limit refuses is not counted by that limit, so a client that slows down is let
through again as soon as its oldest accepted attempt leaves the window. The two keys are
asked together, so each counts an attempt it accepts whatever the other answers.

When Redis cannot be reached the check lets the request through (logged and counted): the
limits protect against abuse, not correctness, and the writes they guard answer for
themselves (inventory's per-user hold limit still holds).

A hot path that already makes one Redis round trip per request may count its limit inside
its own script instead (promotion's claim does, in ``claim.lua``): :meth:`RateLimit.windows`
gives the numbers, :class:`ExemptNetworks` the exemption and :func:`rate_limited` the same
refusal, so that the limit costs no round trip of its own.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import FastAPI, Request
from limits import RateLimitItem, parse
from pydantic import AfterValidator
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.kit import metrics
from services.kit.errors import ResourceExhaustedError, UnavailableError
from services.kit.http import CurrentCaller
from services.kit.identity import Caller
from services.kit.logging import get_logger
from services.kit.lua import evalsha_many, register_scripts
from services.kit.settings import ServiceSettings

log = get_logger(__name__)


class RateLimitedError(ResourceExhaustedError):
    pass


class UnknownRateLimitError(LookupError):
    """A route asks for a limit its application was not given: a wiring mistake."""


def _parsed(text: str) -> str:
    parse(text)  # raises ValueError on anything but the ``limits`` notation
    return text


LimitText = Annotated[str, AfterValidator(_parsed)]
"""A settings field holding a limit (``"5/10 seconds"``), refused at start if malformed."""


@dataclass(frozen=True)
class Window:
    """At most ``amount`` accepted attempts in any ``milliseconds`` (a moving window)."""

    amount: int
    milliseconds: int

    @classmethod
    def of(cls, item: RateLimitItem) -> Window:
        return cls(item.amount, item.get_expiry() * 1000)


@dataclass(frozen=True)
class RateLimit:
    """The limits of one action, in the ``limits`` notation (``"5/10 seconds"``)."""

    per_user: str
    per_address: str

    def items(self) -> tuple[RateLimitItem, RateLimitItem]:
        return parse(self.per_user), parse(self.per_address)

    def windows(self) -> tuple[Window, Window]:
        """(per user, per address), for a limit counted in a service's own script."""
        per_user, per_address = self.items()
        return Window.of(per_user), Window.of(per_address)


class ExemptNetworks:
    """Client networks the per-address limit does not apply to. Answers are remembered per
    address (parsing one costs more than the rest of a hot route's limit check); the memory
    is emptied when it reaches ``remembered`` addresses."""

    def __init__(self, networks: Sequence[str] = (), *, remembered: int = 10_000) -> None:
        self._networks = [ipaddress.ip_network(n) for n in networks]
        self._answers: dict[str, bool] = {}
        self._remembered = remembered

    def cover(self, address: str) -> bool:
        if not self._networks:
            return False
        answer = self._answers.get(address)
        if answer is None:
            if len(self._answers) >= self._remembered:
                self._answers.clear()
            answer = self._answers[address] = self._covers(address)
        return answer

    def _covers(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)


def rate_limited(
    service: str, action: str, who: str, retry_after_seconds: float
) -> RateLimitedError:
    """The refusal of an attempt past the ``who`` ("user" or "address") limit, counted."""
    metrics.RATE_LIMITED.labels(service, action, who).inc()
    retry_after = max(1, math.ceil(retry_after_seconds))
    return RateLimitedError(
        f"too many {action} requests from this {who}; retry in {retry_after} s",
        retry_after_seconds=retry_after,
    )


class RateLimiter:
    """Checks named actions against their limits; keys live under ``ratelimit:<service>``.
    Clients in ``exempt_networks`` skip the per-address limit (not the per-user one)."""

    def __init__(
        self,
        redis: Redis,
        service: str,
        limits: Mapping[str, RateLimit],
        exempt_networks: Sequence[str] = (),
    ) -> None:
        self._redis = redis
        self._service = service
        self._windows = {action: limit.windows() for action, limit in limits.items()}
        self._exempt = ExemptNetworks(exempt_networks)
        self._script = register_scripts(redis, "services.kit", ["ratelimit"])["ratelimit"]
        self._prefix = f"ratelimit:{service}"

    async def check(self, action: str, *, user: str, address: str) -> None:
        """Count one attempt of ``action``; raise RateLimitedError if the user or the
        address went past its limit."""
        try:
            per_user, per_address = self._windows[action]
        except KeyError as error:
            raise UnknownRateLimitError(f"no rate limit configured for {action!r}") from error
        now_ms = int(time.time() * 1000)
        keyed = f"{self._prefix}:{action}"
        calls = [(f"{keyed}:user:{user}", now_ms, per_user.amount, per_user.milliseconds)]
        if not self._exempt.cover(address):
            calls.append(
                (f"{keyed}:address:{address}", now_ms, per_address.amount, per_address.milliseconds)
            )
        try:
            waits = await evalsha_many(self._redis, self._script, 1, calls)
        except (RedisError, UnavailableError) as error:
            log.warning(
                "rate limit not checked: redis unavailable", action=action, error=repr(error)
            )
            metrics.RATE_LIMITED.labels(self._service, action, "unchecked").inc()
            return
        for who, wait_ms in zip(("user", "address"), waits, strict=False):
            if int(wait_ms) > 0:
                raise rate_limited(self._service, action, who, int(wait_ms) / 1000)


def install_rate_limiter(
    app: FastAPI, redis: Redis, settings: ServiceSettings, limits: Mapping[str, RateLimit]
) -> RateLimiter:
    """Give ``app`` its limiter (call it from the app's lifespan, once Redis exists)."""
    limiter = RateLimiter(redis, settings.service_name, limits, settings.exempt_networks)
    app.state.rate_limiter = limiter
    return limiter


def client_address(request: Request) -> str:
    """The client's address as the server saw it. Behind a proxy, uvicorn puts the
    ``X-Forwarded-For`` client here only for proxies listed in ``forwarded_allow_ips``."""
    return request.client.host if request.client else "unknown"


def limit_rate(action: str) -> Callable[[Request, Caller], Awaitable[None]]:
    """A route dependency: ``dependencies=[Depends(limit_rate("buy"))]`` or as a parameter.

    It runs after the caller is verified (an unauthenticated flood is refused before it
    costs a Redis round trip) and before the handler."""

    async def check(request: Request, caller: CurrentCaller) -> None:
        limiter: RateLimiter = request.app.state.rate_limiter
        await limiter.check(action, user=caller.subject, address=client_address(request))

    return check
