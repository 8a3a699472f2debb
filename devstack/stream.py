"""The main job: a brand's whole live stream, scripted, every step through the public HTTP
APIs of the running services, the way the hosts' console and the viewers' apps call them.

A merchant with five products and a host schedule a room; viewers subscribe to the start
reminder; the host goes live; viewers join, many through share codes and invitation cards;
they comment and a spammer is muted; the host pins products and launches a flash sale that
far more buyers tap than there are units (some tap twice, some retry); a coupon rain; a
group buy that completes and one that fails; most buyers pay, some let the payment time
out, a few ask for a refund; a lucky draw; the stream ends. Then every invariant is checked
against the services' own figures, and any that fails makes the run fail.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random

from services.kit.identity import Role, TokenIssuer
from services.kit.settings import ServiceSettings

INVENTORY = "http://127.0.0.1:8101"
ORDER = "http://127.0.0.1:8102"
PROMOTION = "http://127.0.0.1:8103"
ROOM = "http://127.0.0.1:8105"
REFERRAL = "http://127.0.0.1:8106"
ANALYTICS = "http://127.0.0.1:8107"
SANDBOX = "http://127.0.0.1:8190"
CORE = (INVENTORY, ORDER, PROMOTION, ROOM, REFERRAL, ANALYTICS, SANDBOX)
PRODUCTS = ("LIPSTICK-01", "SERUM-02", "MASK-03", "CUSHION-04", "PERFUME-05")
LIST_PRICE = 19_900
FLASH_PRICE = 9_900
GROUP_PRICE = 14_900


class StreamError(Exception):
    """A step of the scripted stream could not be taken (a service refused or is down)."""


@dataclass(frozen=True)
class StreamSize:
    """How big the stream is. The defaults take two to three minutes on two shared cores;
    the issue's full size (5,000 viewers, 3,000 buyers on 200 units) is
    ``--viewers 5000 --buyers 3000 --units 200 --subscribers 1000 --claimers 1000``."""

    subscribers: int = 500
    viewers: int = 2_000
    buyers: int = 800
    units: int = 100
    coupons: int = 50
    claimers: int = 500
    concurrency: int = 200
    pay_share: float = 0.8
    refund_share: float = 0.05
    hold_ttl_seconds: int = 90
    """Long enough that no hold expires while the buyers are still tapping."""

    @classmethod
    def small(cls) -> StreamSize:
        return cls(
            subscribers=50,
            viewers=200,
            buyers=150,
            units=50,
            coupons=20,
            claimers=80,
            concurrency=100,
            hold_ttl_seconds=30,
        )


@dataclass
class Tally:
    """What the live display shows while the stream runs."""

    phase: str = "setting up"
    viewers: int = 0
    subscribers: int = 0
    comments: int = 0
    taps: int = 0
    holds: int = 0
    sold_out: int = 0
    paid: int = 0
    cancelled: int = 0
    refunded: int = 0
    coupons: int = 0
    latencies: list[float] = field(default_factory=list)
    stock_left: int | None = None
    answers: Counter[str] = field(default_factory=Counter)

    def table(self) -> Table:
        table = Table("figure", "value", title=f"live stream: {self.phase}")
        lat = sorted(self.latencies)
        rows = [
            ("viewers joined", self.viewers),
            ("reminder subscribers", self.subscribers),
            ("comments", self.comments),
            ("buy taps", self.taps),
            ("orders (holds)", self.holds),
            ("sold out answers", self.sold_out),
            ("paid", self.paid),
            ("cancelled (timeout)", self.cancelled),
            ("refunded", self.refunded),
            ("coupons claimed", self.coupons),
            ("flash stock left", "-" if self.stock_left is None else self.stock_left),
            ("buy p50 / p99", f"{_pct(lat, 50):.0f} / {_pct(lat, 99):.0f} ms"),
        ]
        for name, value in rows:
            table.add_row(name, str(value))
        return table


def _pct(sorted_seconds: list[float], percent: int) -> float:
    if not sorted_seconds:
        return 0.0
    index = min(len(sorted_seconds) - 1, round(percent / 100 * (len(sorted_seconds) - 1)))
    return sorted_seconds[index] * 1000


@dataclass
class Checks:
    rows: list[tuple[str, bool, str]] = field(default_factory=list)

    def check(self, name: str, passed: bool, detail: str) -> None:
        self.rows.append((name, passed, detail))

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(ok for _, ok, _ in self.rows)


@dataclass
class Person:
    user_id: str
    auth: dict[str, str]
    share_code: str = ""
    """The code this person came through (empty: directly)."""
    entry: str = ""
    own_code: str = ""
    """The code this person minted to share the room."""


@dataclass
class Placed:
    buyer: Person
    order: dict[str, Any]


class Stream:
    def __init__(self, http: httpx.AsyncClient, size: StreamSize, tally: Tally) -> None:
        self.http = http
        self.size = size
        self.tally = tally
        self.checks = Checks()
        self.issuer = TokenIssuer(ServiceSettings())
        run = uuid4().hex[:6]
        self.merchant = f"brand-{run}"
        self.room = f"room-{run}"
        self.skus = [f"{sku}-{run}" for sku in PRODUCTS]
        self.flash_sale = f"flash-{run}"
        self.group_sale = f"group-sale-{run}"
        self.group_offer = f"group-offer-{run}"
        self.coupon_template = f"rain-{run}"
        self.admin = self._auth(f"admin-{run}", Role.MERCHANT_ADMIN)
        self.host_id = f"host-{run}"
        self.host = self._auth(self.host_id, Role.HOST)
        self.operator = self._auth(f"operator-{run}", Role.OPERATOR)
        self._limit = asyncio.Semaphore(size.concurrency)
        self.placed: list[Placed] = []
        self.late_payers: list[Placed] = []
        self.payments_sent = asyncio.Event()
        self.paying: list[Placed] = []
        self.payments: list[asyncio.Task[None]] = []

    def _auth(self, subject: str, role: Role) -> dict[str, str]:
        token = self.issuer.mint(subject, [role], self.merchant, ttl_seconds=3 * 3600)
        return {"Authorization": f"Bearer {token}"}

    def person(self, user_id: str) -> Person:
        return Person(user_id, self._auth(user_id, Role.VIEWER))

    async def call(
        self,
        method: str,
        url: str,
        auth: dict[str, str],
        json: Any = None,
        expect: Iterable[int] = (200, 201, 204),
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        response = await self._send(method, url, json, {**auth, **(headers or {})})
        if response.status_code not in tuple(expect):
            raise StreamError(
                f"{method} {url} answered {response.status_code}: {response.text[:300]}"
            )
        return response

    async def _send(
        self, method: str, url: str, json: Any, headers: dict[str, str]
    ) -> httpx.Response:
        """Like a client app: a request whose connection broke is sent again (every call
        the script makes is safe to repeat: checkouts carry their idempotency key)."""
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(4),
            wait=wait_random(0.05, 0.5),
            retry=retry_if_exception_type(httpx.TransportError),
            reraise=True,
        ):
            with attempt:
                async with self._limit:
                    return await self.http.request(method, url, json=json, headers=headers)
        raise AssertionError("unreachable: tenacity reraises")

    async def fan_out(self, calls: Iterable[Awaitable[Any]]) -> list[Any]:
        return list(await asyncio.gather(*calls))

    # --- the script ---------------------------------------------------------------------

    async def set_up_shop(self) -> None:
        self.tally.phase = "the brand sets up its products, prices and programme"
        for sku in self.skus:
            await self.call(
                "POST",
                f"{INVENTORY}/v1/skus/{sku}/receipts",
                self.admin,
                {"quantity": self.size.units * 4},
            )
            await self.call(
                "PUT",
                f"{PROMOTION}/v1/prices/{sku}",
                self.admin,
                {"amount_minor": LIST_PRICE, "currency": "CNY"},
            )
        await self.call(
            "PUT",
            f"{REFERRAL}/v1/programme",
            self.admin,
            {"levels": 1, "default_rate_bps": 500},
        )

    async def schedule_room(self) -> None:
        self.tally.phase = "the host schedules the room with its line-up"
        starts = datetime.now(UTC) + timedelta(minutes=30)
        await self.call(
            "POST",
            f"{ROOM}/v1/rooms",
            self.admin,
            {
                "room_id": self.room,
                "host_id": self.host_id,
                "title": "Autumn beauty live",
                "cover_url": "https://cdn.example/cover.jpg",
                "channels": ["mini_program", "h5", "app"],
                "starts_at": starts.isoformat(),
                "duration_minutes": 120,
            },
        )
        for sku in self.skus:
            await self.call(
                "POST", f"{ROOM}/v1/rooms/{self.room}/lineup", self.admin, {"sku_id": sku}
            )
        now = datetime.now(UTC)
        window = {
            "starts_at": (now - timedelta(seconds=1)).isoformat(),
            "ends_at": (now + timedelta(hours=2)).isoformat(),
        }
        await self.call(
            "POST",
            f"{PROMOTION}/v1/campaigns",
            self.admin,
            {
                "campaign_id": self.flash_sale,
                "sku_id": self.skus[0],
                "room_id": self.room,
                "quantity": self.size.units,
                "per_user_limit": 1,
                "hold_ttl_seconds": self.size.hold_ttl_seconds,
                "flash_price": {"amount_minor": FLASH_PRICE, "currency": "CNY"},
                **window,
            },
        )
        await self.call(
            "POST",
            f"{PROMOTION}/v1/campaigns",
            self.admin,
            {
                "campaign_id": self.group_sale,
                "sku_id": self.skus[1],
                "room_id": self.room,
                "quantity": 20,
                "per_user_limit": 2,
                "hold_ttl_seconds": 600,
                **window,
            },
        )
        await self.call(
            "POST",
            f"{PROMOTION}/v1/group-offers",
            self.admin,
            {
                "offer_id": self.group_offer,
                "sku_id": self.skus[1],
                "group_price": {"amount_minor": GROUP_PRICE, "currency": "CNY"},
                "required_members": 2,
                "duration_seconds": 60,
                **window,
            },
        )

    async def subscribe(self, people: list[Person]) -> None:
        self.tally.phase = "viewers subscribe to the start reminder"

        async def one(person: Person) -> None:
            await self.call("PUT", f"{ROOM}/v1/rooms/{self.room}/reminder", person.auth)
            self.tally.subscribers += 1

        await self.fan_out(one(p) for p in people)

    async def go_live(self) -> None:
        self.tally.phase = "the host goes live"
        await self.call("POST", f"{ROOM}/v1/rooms/{self.room}/start", self.host)

    async def share(self, sharers: list[Person]) -> None:
        self.tally.phase = "fans mint share codes and invitation cards"
        for sharer in sharers:
            minted = await self.call(
                "POST",
                f"{REFERRAL}/v1/share-codes",
                sharer.auth,
                {"target_kind": "room", "target_id": self.room},
            )
            sharer.own_code = minted.json()["code"]

    async def join(self, viewers: list[Person], sharers: list[Person]) -> None:
        self.tally.phase = "viewers join the room"
        for index, viewer in enumerate(viewers):
            if sharers and index % 5 < 3:  # three in five come through a sharer
                sharer = sharers[index % len(sharers)]
                viewer.share_code = sharer.own_code
                viewer.entry = "invitation_card" if index % 2 else "share_link"

        async def one(viewer: Person) -> None:
            await self.call(
                "POST",
                f"{ROOM}/v1/rooms/{self.room}/viewers/join",
                viewer.auth,
                {
                    "channel": ("mini_program", "h5", "app")[hash(viewer.user_id) % 3],
                    "share_code": viewer.share_code,
                    "entry": viewer.entry,
                    "device_id": f"device-{viewer.user_id}",
                },
            )
            self.tally.viewers += 1

        await self.fan_out(one(v) for v in viewers)

    async def chat(self, viewers: list[Person], spammer: Person) -> None:
        self.tally.phase = "comments, and a spammer muted"
        lines = ("好看!", "what shade is this?", "来了来了", "price?", "链接在哪")

        async def one(index: int, viewer: Person) -> None:
            await self.call(
                "POST",
                f"{ROOM}/v1/rooms/{self.room}/comments",
                viewer.auth,
                {"text": lines[index % len(lines)]},
            )
            self.tally.comments += 1

        await self.fan_out(one(i, v) for i, v in enumerate(viewers))
        await self.call(
            "POST",
            f"{ROOM}/v1/rooms/{self.room}/comments",
            spammer.auth,
            {"text": "cheap followers, dm me"},
        )
        await self.call(
            "PUT",
            f"{ROOM}/v1/rooms/{self.room}/mutes/{spammer.user_id}",
            self.operator,
            {"reason": "spam"},
        )
        refused = await self.call(
            "POST",
            f"{ROOM}/v1/rooms/{self.room}/comments",
            spammer.auth,
            {"text": "cheap followers again"},
            expect=(403, 409, 422, 429),
        )
        self.checks.check("a muted spammer cannot comment", True, f"answered {refused.status_code}")

    async def pin(self, sku: str) -> None:
        await self.call("PUT", f"{ROOM}/v1/rooms/{self.room}/pin", self.host, {"sku_id": sku})

    async def flash_sale_spike(self, buyers: list[Person]) -> None:
        self.tally.phase = f"flash sale: {self.size.units} units, {len(buyers)} buyers tap"
        await self.pin(self.skus[0])
        await self.call(
            "POST", f"{ROOM}/v1/rooms/{self.room}/campaigns/{self.flash_sale}/start", self.host
        )
        results: dict[str, set[str]] = {}

        async def tap(buyer: Person, key: str) -> None:
            body = {
                "merchant_id": self.merchant,
                "room_id": self.room,
                "channel": "app",
                "lines": [{"sku_id": self.skus[0], "quantity": 1}],
                "share_code": buyer.share_code,
            }
            started = time.perf_counter()
            response = await self._send(
                "POST", f"{ORDER}/v1/orders", body, {**buyer.auth, "Idempotency-Key": key}
            )
            self.tally.latencies.append(time.perf_counter() - started)
            self.tally.taps += 1
            self.tally.answers[str(response.status_code)] += 1
            if response.status_code == 201:
                order_id = response.json()["order_id"]
                if order_id not in results.setdefault(buyer.user_id, set()):
                    results[buyer.user_id].add(order_id)
                    placed = Placed(buyer, response.json())
                    self.placed.append(placed)
                    self.tally.holds += 1
                    if len(self.placed) % 10 < round(self.size.pay_share * 10):
                        # this buyer pays at once, as buyers do; the others never pay
                        self.paying.append(placed)
                        self.payments.append(asyncio.create_task(self.pay(placed)))
            elif response.status_code == 409:
                self.tally.sold_out += 1

        keys = {b.user_id: f"tap-{uuid4().hex}" for b in buyers}
        taps = [tap(b, keys[b.user_id]) for b in buyers]
        taps += [tap(b, keys[b.user_id]) for b in buyers[::7]]  # double taps, one key
        await self.fan_out(taps)
        sale = (
            await self.call("GET", f"{INVENTORY}/v1/sales/{self.flash_sale}", self.admin)
        ).json()
        self.tally.stock_left = sale["available"]
        twice = [user for user, orders in results.items() if len(orders) > 1]
        self.checks.check(
            "a double tap with one key makes one order",
            not twice,
            f"{len(buyers[::7])} buyers tapped twice; {len(twice)} got two orders",
        )

    async def coupon_rain(self, claimers: list[Person]) -> None:
        self.tally.phase = f"coupon rain: {self.size.coupons} coupons, {len(claimers)} claimers"
        now = datetime.now(UTC)
        await self.call(
            "POST",
            f"{PROMOTION}/v1/coupon-templates",
            self.admin,
            {
                "template_id": self.coupon_template,
                "kind": "fixed_amount",
                "currency": "CNY",
                "room_id": self.room,
                "valid_from": now.isoformat(),
                "valid_until": (now + timedelta(days=7)).isoformat(),
                "amount_minor": 1_000,
                "quota": self.size.coupons,
                "per_user_limit": 1,
            },
        )
        claimed: Counter[str] = Counter()

        async def claim(person: Person) -> None:
            answer = await self.call(
                "POST",
                f"{PROMOTION}/v1/merchants/{self.merchant}/coupon-templates/"
                f"{self.coupon_template}/claims",
                person.auth,
                {"claim_id": f"claim-{uuid4().hex}"},
            )
            claimed[answer.json()["outcome"]] += 1
            if answer.json()["outcome"] == "claimed":
                self.tally.coupons += 1

        await self.fan_out(claim(p) for p in claimers)
        self.checks.check(
            "the coupon rain never exceeds its quota",
            claimed["claimed"] == min(self.size.coupons, len(claimers)),
            f"{claimed['claimed']} claimed of {self.size.coupons}; {claimed['sold_out']} too late",
        )

    async def group_buys(self, people: list[Person]) -> tuple[str, str, list[Placed]]:
        """One group fills with two paid members; another never fills and fails."""
        self.tally.phase = "group buys: one fills, one waits for its deadline"
        base = f"{PROMOTION}/v1/merchants/{self.merchant}"
        full, lonely = f"g-full-{uuid4().hex[:6]}", f"g-lonely-{uuid4().hex[:6]}"
        leader, member, alone = people[0], people[1], people[2]
        await self.call(
            "POST",
            f"{base}/group-offers/{self.group_offer}/groups",
            leader.auth,
            {"group_id": full},
        )
        await self.call("POST", f"{base}/groups/{full}/members", member.auth)
        await self.call(
            "POST",
            f"{base}/group-offers/{self.group_offer}/groups",
            alone.auth,
            {"group_id": lonely},
        )
        orders = []
        for person, group in ((leader, full), (member, full), (alone, lonely)):
            placed = await self.call(
                "POST",
                f"{ORDER}/v1/orders",
                person.auth,
                {
                    "merchant_id": self.merchant,
                    "room_id": self.room,
                    "channel": "h5",
                    "lines": [{"sku_id": self.skus[1], "quantity": 1}],
                    "group_id": group,
                },
                headers={"Idempotency-Key": f"group-{uuid4().hex}"},
            )
            orders.append(Placed(person, placed.json()))
        for member_order in orders:
            await self.pay(member_order)
        return full, lonely, orders

    async def pay(self, placed: Placed) -> None:
        """Open the payment and tap "pay"; an order whose deadline has already passed
        refuses to open one (409), and the buyer is late."""
        payable = await self.call(
            "POST",
            f"{ORDER}/v1/orders/{placed.order['order_id']}/payments",
            placed.buyer.auth,
            expect=(200, 409),
        )
        if payable.status_code == 200:
            await self.call("POST", payable.json()["pay_url"], {}, {"outcome": "succeed"})

    async def checkout_settles(self) -> tuple[list[Placed], list[Placed], list[Placed]]:
        """Most buyers pay, the rest let the payment time out, a few paid ones refund.
        A payment that lands after its order's deadline is refunded by the order service
        (the order ends cancelled): such buyers are counted as late, not as failures."""
        self.tally.phase = "buyers pay; some let the payment time out; a few refund"
        paying = self.paying
        idle = [p for p in self.placed if p not in paying]
        try:
            await asyncio.gather(*self.payments)
        finally:
            self.payments_sent.set()
        states = await self._until_status(paying, {"paid", "cancelled"})
        payers = [p for p, state in zip(paying, states, strict=True) if state == "paid"]
        self.late_payers = [p for p in paying if p not in payers]
        self.tally.paid = len(payers)
        refunders = payers[: max(1, round(len(payers) * self.size.refund_share))] if payers else []
        for placed in refunders:
            await self.call(
                "POST",
                f"{ORDER}/v1/orders/{placed.order['order_id']}/refunds",
                placed.buyer.auth,
                {"reason": "changed my mind"},
            )
        self.tally.refunded = len(refunders)
        self.tally.phase = "waiting for unpaid orders to time out"
        await self._until_status(idle, {"cancelled"}, within=self.size.hold_ttl_seconds + 60)
        self.tally.cancelled = len(idle) + len(self.late_payers)
        return payers, idle + self.late_payers, refunders

    async def _until_status(
        self, placed: list[Placed], wanted: set[str], within: float = 90.0
    ) -> list[str]:
        """Each order's status once every one is in ``wanted`` (bounded wait)."""
        deadline = time.monotonic() + within
        while True:
            states = await self.fan_out(self._status(p) for p in placed)
            pending = [state for state in states if state not in wanted]
            if not pending:
                return states
            if time.monotonic() > deadline:
                raise StreamError(
                    f"{len(pending)} orders never became {' or '.join(sorted(wanted))}"
                )
            await asyncio.sleep(0.5)

    async def _analytics_agree(self, payers: list[Placed], group_orders: list[Placed]) -> None:
        """The review's figures, computed by analytics from events alone, equal what the
        services said during the stream (waiting, bounded, for analytics to catch up)."""
        expected = {
            "orders": len(self.placed) + len(group_orders),
            "paid_orders": len(payers) + len(group_orders),
            "unique_viewers": self.tally.viewers,
            "subscribers": self.tally.subscribers,
        }
        url = f"{ANALYTICS}/v1/rooms/{self.room}/review"
        deadline = time.monotonic() + 60
        found: dict[str, Any] = {}
        while time.monotonic() < deadline:
            answer = await self.call("GET", url, self.admin, expect=(200, 409))
            if answer.status_code == 200:
                headline = answer.json()["headline"]
                found = {name: headline.get(name) for name in expected}
                if found == expected:
                    break
            await asyncio.sleep(1.0)
        self.checks.check(
            "analytics counts what the services counted",
            found == expected,
            f"review {found}, services {expected}",
        )

    async def _until_holds_drain(self, sale_id: str, within: float = 60.0) -> None:
        """Inventory releases the holds of cancelled orders when it consumes their events;
        wait (bounded) until it has caught up before counting."""
        deadline = time.monotonic() + within
        url = f"{INVENTORY}/v1/sales/{sale_id}"
        while (await self.call("GET", url, self.admin)).json()["held"] > 0:
            if time.monotonic() > deadline:
                return  # the checks report what is still held
            await asyncio.sleep(0.5)

    async def _status(self, placed: Placed) -> str:
        order = await self.call(
            "GET", f"{ORDER}/v1/orders/{placed.order['order_id']}", placed.buyer.auth
        )
        return str(order.json()["status"])

    async def lucky_draw(self, present: list[Person]) -> dict[str, Any]:
        self.tally.phase = "a lucky draw among the viewers present"

        async def still_watching(viewer: Person) -> None:
            answer = await self.call(
                "POST",
                f"{ROOM}/v1/rooms/{self.room}/viewers/heartbeat",
                viewer.auth,
                expect=(204, 409),
            )
            if answer.status_code == 409:  # timed out meanwhile: the app joins again
                await self.call(
                    "POST",
                    f"{ROOM}/v1/rooms/{self.room}/viewers/join",
                    viewer.auth,
                    {"channel": "app", "share_code": "", "entry": "", "device_id": ""},
                )

        await self.fan_out(still_watching(v) for v in present)
        drawn = await self.call(
            "POST",
            f"{ROOM}/v1/rooms/{self.room}/draws",
            self.host,
            {
                "draw_id": f"draw-{uuid4().hex[:6]}",
                "prize": "a full-size serum",
                "prizes": 5,
                "pool": "present",
            },
        )
        result: dict[str, Any] = drawn.json()
        return result

    async def end(self) -> None:
        self.tally.phase = "the stream ends"
        await self.call("POST", f"{ROOM}/v1/rooms/{self.room}/end", self.host)

    # --- the checks -----------------------------------------------------------------------

    async def verify(
        self,
        payers: list[Placed],
        idle: list[Placed],
        refunders: list[Placed],
        groups: tuple[str, str, list[Placed]],
        draw: dict[str, Any],
    ) -> None:
        self.tally.phase = "waiting for the released holds to reach inventory"
        await self._until_holds_drain(self.flash_sale)
        self.tally.phase = "checking every invariant"
        for sale_id in (self.flash_sale, self.group_sale):
            sale = (await self.call("GET", f"{INVENTORY}/v1/sales/{sale_id}", self.admin)).json()
            accounted = sale["available"] + sale["held"] + sale["sold"] + sale["returned"]
            self.checks.check(
                f"sale {sale_id}: no unit oversold or lost",
                sale["sold"] + sale["held"] <= sale["allocated"] == accounted,
                f"allocated {sale['allocated']} = available {sale['available']} + held"
                f" {sale['held']} + sold {sale['sold']} + returned {sale['returned']}",
            )
            agree = (
                await self.call("GET", f"{INVENTORY}/v1/sales/{sale_id}/reconciliation", self.admin)
            ).json()
            self.checks.check(
                f"sale {sale_id}: Redis and the event store agree",
                bool(agree["in_agreement"]),
                str(agree["drifts"]) or "no drift",
            )
        sold_expected = len(payers) - len(refunders)
        url = f"{INVENTORY}/v1/sales/{self.flash_sale}"
        deadline = time.monotonic() + 30  # refunds reach inventory through order.events
        while True:
            flash = (await self.call("GET", url, self.admin)).json()
            if flash["sold"] == sold_expected or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        self.checks.check(
            "units sold = orders paid and kept",
            flash["sold"] == sold_expected and flash["held"] == 0,
            f"sold {flash['sold']}, expected {sold_expected}; held {flash['held']}",
        )
        self.checks.check(
            "the flash sale sold out exactly",
            len(self.placed) == min(self.size.units, self.tally.taps),
            f"{len(self.placed)} orders for {self.size.units} units",
        )
        states = Counter(await self.fan_out(self._status(p) for p in self.placed))
        finals = {"paid", "cancelled", "refunded"}
        self.checks.check(
            "every order ends in a legal final state",
            set(states) <= finals
            and states["cancelled"] == len(idle)
            and states["refunded"] == len(refunders),
            ", ".join(f"{k} {v}" for k, v in sorted(states.items())),
        )
        full, _, group_orders = groups
        base = f"{PROMOTION}/v1/merchants/{self.merchant}/groups"
        leader = group_orders[0].buyer
        completed = (await self.call("GET", f"{base}/{full}", leader.auth)).json()
        self.checks.check(
            "a group buy with two paid members completes",
            completed["state"] == "completed",
            f"group {full}: {completed['state']}",
        )
        alone = group_orders[2]
        await self._until_status([alone], {"cancelled"}, within=120)
        self.checks.check(
            "a group buy that did not fill fails; its paid member is refunded",
            True,
            f"order {alone.order['order_id']} cancelled (group failed)",
        )
        summary = (await self.call("GET", f"{REFERRAL}/v1/reports/summary", self.admin)).json()
        self.checks.check(
            "the commission ledger balances",
            summary["unbalanced_postings"] == 0,
            f"{summary['attributed_orders']} orders attributed, {summary['paid_orders']} paid;"
            f" commission {summary['commission_by_kind']}; unbalanced postings"
            f" {summary['unbalanced_postings']}",
        )
        await self._analytics_agree(payers, group_orders)
        self.checks.check(
            "the lucky draw named its winners, each once",
            len(draw.get("winners", [])) == len(set(draw.get("winners", []))) > 0,
            f"{len(draw.get('winners', []))} winners",
        )


async def wait_ready(http: httpx.AsyncClient, bases: Iterable[str], within: float = 90.0) -> None:
    deadline = time.monotonic() + within
    for base in bases:
        while True:
            try:
                if (await http.get(f"{base}/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise StreamError(f"{base} is not ready; see .stack/logs/")
            await asyncio.sleep(0.3)


async def run_stream(size: StreamSize, console: Console) -> Checks:
    limits = httpx.Limits(
        max_connections=size.concurrency, max_keepalive_connections=size.concurrency
    )
    tally = Tally()
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as http:
        await wait_ready(http, CORE)
        stream = Stream(http, size, tally)
        people = [stream.person(f"fan-{n}-{stream.merchant}") for n in range(size.viewers)]
        sharers = people[: max(1, size.viewers // 50)]
        with Live(tally.table(), console=console, refresh_per_second=4) as live:
            refresh = asyncio.create_task(_refresh(live, tally))
            try:
                await stream.set_up_shop()
                await stream.schedule_room()
                await stream.subscribe(people[: size.subscribers])
                await stream.go_live()
                await stream.share(sharers)
                await stream.join(people, sharers)
                groups_task = asyncio.create_task(stream.group_buys(people[-3:]))
                await stream.chat(people[: max(10, size.viewers // 10)], people[-4])
                await stream.flash_sale_spike(people[: size.buyers])
                settling = asyncio.create_task(stream.checkout_settles())
                await stream.payments_sent.wait()  # buyers pay first; the rain comes after
                await stream.coupon_rain(people[: size.claimers])
                groups = await groups_task
                payers, idle, refunders = await settling
                draw = await stream.lucky_draw(people[: max(20, size.viewers // 10)])
                await stream.end()
                await stream.verify(payers, idle, refunders, groups, draw)
            finally:
                refresh.cancel()
                live.update(tally.table())
    review = f"{ANALYTICS}/v1/rooms/{stream.room}/review.html"
    console.print(
        f"the post-stream review: {review} (JSON: drop .html; CSV: .csv), with a token of"
        f' merchant {stream.merchant}: make token ARGS="--role merchant-admin'
        f' --merchant {stream.merchant}"'
    )
    return stream.checks


async def _refresh(live: Live, tally: Tally) -> None:
    while True:
        live.update(Group(tally.table()))
        await asyncio.sleep(0.25)


def render_checks(checks: Checks, console: Console) -> None:
    table = Table("invariant", "holds", "detail", title="checks")
    for name, passed, detail in checks.rows:
        table.add_row(name, "[green]yes[/green]" if passed else "[red]NO[/red]", detail)
    console.print(table)


Runner = Callable[[StreamSize, Console], Awaitable[Checks]]


@dataclass(frozen=True)
class SaleResult:
    buyers: int
    taps: int
    seconds: float
    answers: dict[str, int]
    latencies: list[float]
    sale: dict[str, Any]

    @property
    def oversold(self) -> int:
        taken = int(self.sale["sold"]) + int(self.sale["held"])
        return max(0, taken - int(self.sale["allocated"]))


async def run_sale(size: StreamSize, console: Console) -> SaleResult:
    """`livecommerce sale`: a flash-sale spike against the running stack: a room goes live,
    its host launches a sale of ``size.units`` units and ``size.buyers`` buyers tap at once."""
    limits = httpx.Limits(
        max_connections=size.concurrency, max_keepalive_connections=size.concurrency
    )
    tally = Tally()
    async with httpx.AsyncClient(timeout=120.0, limits=limits) as http:
        await wait_ready(http, (INVENTORY, ORDER, PROMOTION, ROOM, REFERRAL))
        stream = Stream(http, size, tally)
        buyers = [stream.person(f"buyer-{n}-{stream.merchant}") for n in range(size.buyers)]
        with console.status("setting up a merchant, a room and a flash sale"):
            await stream.set_up_shop()
            await stream.schedule_room()
            await stream.go_live()
        started = time.perf_counter()
        with console.status(f"{size.buyers} buyers tap on {size.units} units"):
            await stream.flash_sale_spike(buyers)
        seconds = time.perf_counter() - started
        sale = (
            await stream.call("GET", f"{INVENTORY}/v1/sales/{stream.flash_sale}", stream.admin)
        ).json()
    return SaleResult(
        size.buyers, tally.taps, seconds, dict(tally.answers), sorted(tally.latencies), sale
    )


def render_sale(result: SaleResult, console: Console) -> None:
    table = Table("figure", "value", title="flash-sale spike through the order API")
    lat = result.latencies
    rows = [
        ("buyers / taps (one in seven tapped twice)", f"{result.buyers} / {result.taps}"),
        ("answers", ", ".join(f"{k}: {v}" for k, v in sorted(result.answers.items()))),
        ("answered per second", f"{result.taps / result.seconds:.0f}"),
        ("latency p50 / p90 / p99", " / ".join(f"{_pct(lat, p):.0f} ms" for p in (50, 90, 99))),
        (
            "allocated / held / sold",
            f"{result.sale['allocated']} / {result.sale['held']} / {result.sale['sold']}",
        ),
        ("oversold", str(result.oversold)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


async def fetch_review(room_id: str, merchant_id: str) -> dict[str, Any]:
    """`livecommerce report`: the room's post-stream review from analytics."""
    issuer = TokenIssuer(ServiceSettings())
    token = issuer.mint("cli", [Role.MERCHANT_ADMIN], merchant_id)
    async with httpx.AsyncClient(timeout=30.0) as http:
        answer = await http.get(
            f"{ANALYTICS}/v1/rooms/{room_id}/review",
            headers={"Authorization": f"Bearer {token}"},
        )
    if answer.status_code != 200:
        detail = answer.json().get("detail", answer.text) if answer.content else answer.text
        raise StreamError(f"analytics answered {answer.status_code}: {detail}")
    review: dict[str, Any] = answer.json()
    return review
