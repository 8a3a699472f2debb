"""Abuse limits: per-user and per-client-address rate limits in Redis, shared by every
replica of a service.

The counting is the ``limits`` library's moving window over Redis: one Lua script per
check records the hit and decides in one atomic step, so replicas racing on one key never
let more than the limit through, and the window slides (no burst of twice the limit at a
window's edge, as fixed windows allow). A service names its actions (``buy``, ``claim``,
``comment``) and gives each a per-user and a per-address limit in the ``limits`` notation
(``"10/10 seconds"``, ``"600/minute"``); an HTTP route takes :func:`limit_rate` as a
dependency. A refusal is :class:`RateLimitedError`: 429 problem+json with ``Retry-After``.

An attempt the limit refuses is not counted (the window is of accepted attempts), so a
client that slows down is let through again as soon as its oldest accepted attempt leaves
the window; an attempt the user's key accepts and the address's key refuses still counts
against the user.

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
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from pydantic import AfterValidator
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.kit import metrics
from services.kit.errors import ResourceExhaustedError
from services.kit.http import CurrentCaller
from services.kit.identity import Caller
from services.kit.logging import get_logger
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
        self._service = service
        self._items = {action: limit.items() for action, limit in limits.items()}
        self._exempt = ExemptNetworks(exempt_networks)
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=f"ratelimit:{service}",
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]  # typed too narrowly
        )
        self._limiter = MovingWindowRateLimiter(storage)

    async def check(self, action: str, *, user: str, address: str) -> None:
        """Count one attempt of ``action``; raise RateLimitedError if the user or the
        address went past its limit."""
        try:
            per_user, per_address = self._items[action]
        except KeyError as error:
            raise UnknownRateLimitError(f"no rate limit configured for {action!r}") from error
        try:
            user_ok = await self._limiter.hit(per_user, action, "user", user)
            address_ok = self._exempt.cover(address) or await self._limiter.hit(
                per_address, action, "address", address
            )
            if user_ok and address_ok:
                return
            refused = (per_user, "user", user) if not user_ok else (per_address, "address", address)
            stats = await self._limiter.get_window_stats(refused[0], action, *refused[1:])
        except RedisError as error:
            log.warning(
                "rate limit not checked: redis unavailable", action=action, error=repr(error)
            )
            metrics.RATE_LIMITED.labels(self._service, action, "unchecked").inc()
            return
        raise rate_limited(self._service, action, refused[1], stats.reset_time - time.time())


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
