"""The HTTP API against Postgres and Redis: share codes and their links, the minting limit,
invitation cards, withdrawals' refusals, merchant configuration and reports. Bad input is
a clear 4xx problem+json and changes nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from io import BytesIO

import httpx
from PIL import Image

from livecommerce.room.v1 import events_pb2 as room_events
from services.kit.identity import Role
from services.kit.wire import timestamp
from services.referral.tests.conftest import Harness

ADMIN = Role.MERCHANT_ADMIN


async def test_a_user_mints_a_share_code_with_links_for_every_channel_and_resolves_it(
    harness: Harness, http: httpx.AsyncClient
) -> None:
    minted = await http.post(
        "/v1/share-codes",
        json={"target_kind": "group_buy", "target_id": "g/42"},
        headers=harness.token("alice"),
    )
    code = minted.json()["code"]
    resolved = await http.get(f"/v1/share-codes/{code}", headers=harness.token("bob"))
    mine = await http.get("/v1/share-codes", headers=harness.token("alice"))

    assert minted.status_code == 201
    assert minted.json()["links"] == {
        "mini_program_path": f"pages/group/index?id=g%2F42&sc={code}",
        "h5_url": f"https://h5.livecommerce.example/s/{code}",
        "app_link": f"livecommerce://group_buy/g%2F42?sc={code}",
    }
    assert resolved.json()["sharer_id"] == "alice"
    assert [c["code"] for c in mine.json()] == [code]
    stored = await harness.parts.store.read_stream(f"share:{harness.merchant}:{code}")
    assert [e.event_type for e in stored] == ["livecommerce.referral.v1.ShareCodeCreated"]


async def test_a_forged_or_malformed_or_foreign_code_is_a_clear_422(
    harness: Harness, http: httpx.AsyncClient
) -> None:
    code = (await harness.mint("alice")).code
    forged = ("b" if code[0] == "a" else "a") + code[1:]
    answers = [
        await http.get(f"/v1/share-codes/{forged}", headers=harness.token("bob")),
        await http.get("/v1/share-codes/not-a-code", headers=harness.token("bob")),
    ]
    harness.merchant = "another-merchant"
    answers.append(await http.get(f"/v1/share-codes/{code}", headers=harness.token("bob")))

    assert [a.status_code for a in answers] == [422, 422, 422]
    assert all(a.headers["content-type"] == "application/problem+json" for a in answers)
    assert answers[0].json()["detail"] == "the share code's signature does not verify"
    assert answers[2].json()["detail"] == "the share code's signature does not verify"


async def test_minting_faster_than_the_limit_is_refused_with_429(
    harness: Harness, http: httpx.AsyncClient
) -> None:
    limit = harness.parts.settings.mint_limit_per_minute
    body = {"target_kind": "room", "target_id": "room-1"}
    answers = [
        (await http.post("/v1/share-codes", json=body, headers=harness.token("eager"))).status_code
        for _ in range(limit + 2)
    ]

    assert answers.count(201) == limit
    assert answers[-2:] == [429, 429]


async def test_bad_requests_are_refused_and_change_nothing(
    harness: Harness, http: httpx.AsyncClient
) -> None:
    await harness.configure(min_withdrawal_minor=500)
    viewer = harness.token("alice")
    answers = {
        "unknown target kind": await http.post(
            "/v1/share-codes", json={"target_kind": "shop", "target_id": "x"}, headers=viewer
        ),
        "no token": await http.post(
            "/v1/share-codes", json={"target_kind": "room", "target_id": "x"}
        ),
        "below the minimum": await http.post(
            "/v1/me/withdrawals", json={"amount_minor": 100}, headers=viewer
        ),
        "above available": await http.post(
            "/v1/me/withdrawals", json={"amount_minor": 1_000}, headers=viewer
        ),
        "negative amount": await http.post(
            "/v1/me/withdrawals", json={"amount_minor": -5}, headers=viewer
        ),
        "viewer configures": await http.put("/v1/programme", json={}, headers=viewer),
        "level 2 rate in one level": await http.put(
            "/v1/programme",
            json={"levels": 1, "level_two_rate_bps": 100},
            headers=harness.token("boss", ADMIN),
        ),
        "rate too high": await http.put(
            "/v1/programme", json={"default_rate_bps": 9_000}, headers=harness.token("boss", ADMIN)
        ),
        "unknown withdrawal": await http.post(
            "/v1/withdrawals/nope/approve", headers=harness.token("boss", ADMIN)
        ),
    }

    assert {k: v.status_code for k, v in answers.items()} == {
        "unknown target kind": 422,
        "no token": 401,
        "below the minimum": 422,
        "above available": 409,
        "negative amount": 422,
        "viewer configures": 403,
        "level 2 rate in one level": 422,
        "rate too high": 422,
        "unknown withdrawal": 404,
    }
    assert answers["above available"].json()["detail"] == "1000 asked for, 0 available"
    mine = await http.get("/v1/me/withdrawals", headers=viewer)
    programme = await http.get("/v1/programme", headers=harness.token("boss", ADMIN))
    assert mine.json() == []
    assert programme.json()["version"] == 1


async def test_two_withdrawals_racing_for_one_balance_never_spend_it_twice(
    harness: Harness, http: httpx.AsyncClient
) -> None:
    await harness.configure(default_rate_bps=1000, min_withdrawal_minor=100)
    await harness.sold_through_share("o1", "alice", "bob", [("sku", 10_000, "")])
    await harness.pass_return_window("o1")

    answers = await asyncio.gather(
        *(
            http.post(
                "/v1/me/withdrawals", json={"amount_minor": 700}, headers=harness.token("alice")
            )
            for _ in range(4)
        )
    )
    rejected = next(a for a in answers if a.status_code == 201).json()["withdrawal_id"]
    await http.post(
        f"/v1/withdrawals/{rejected}/reject",
        json={"reason": "check id"},
        headers=harness.token("boss", ADMIN),
    )
    earnings = (await http.get("/v1/me/earnings", headers=harness.token("alice"))).json()

    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409]
    assert (earnings["available_minor"], earnings["withdrawing_minor"]) == (1_000, 0)
    assert await harness.ledger_total() == 0


async def test_an_invitation_card_is_a_png_of_the_room_with_a_qr_code_and_is_cached(
    harness: Harness, http: httpx.AsyncClient
) -> None:
    starts = datetime.now(UTC) + timedelta(days=1)
    await harness.room_event(
        room_events.RoomScheduled(
            room_id="room-9", host_id="host", title="Autumn lipsticks", starts_at=timestamp(starts)
        ),
        "room-9",
    )
    first = await http.get("/v1/rooms/room-9/card.png?name=Alice", headers=harness.token("alice"))
    again = await http.get(
        "/v1/rooms/room-9/card.png?name=Alice",
        headers=harness.token("alice") | {"If-None-Match": first.headers["etag"]},
    )
    renamed = await http.get("/v1/rooms/room-9/card.png?name=Ally", headers=harness.token("alice"))
    codes = await http.get("/v1/share-codes", headers=harness.token("alice"))

    image = Image.open(BytesIO(first.content))
    assert first.status_code == 200
    assert first.headers["content-type"] == "image/png"
    assert (image.format, image.size) == ("PNG", (720, 1080))
    assert again.status_code == 304
    assert renamed.headers["etag"] != first.headers["etag"]
    assert [(c["target_kind"], c["target_id"]) for c in codes.json()] == [("room", "room-9")]


async def test_a_merchant_starts_a_campaign_and_reads_its_report(
    harness: Harness, http: httpx.AsyncClient
) -> None:
    now = datetime.now(UTC)
    admin = harness.token("boss", ADMIN)
    created = await http.post(
        "/v1/red-packet-campaigns",
        json={
            "campaign_id": "c1",
            "amount_minor": 500,
            "budget_minor": 1_000,
            "starts_at": (now - timedelta(minutes=1)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
        },
        headers=admin,
    )
    duplicate = await http.post(
        "/v1/red-packet-campaigns", json=created.json() | {"budget_minor": 1_000}, headers=admin
    )
    await harness.configure(default_rate_bps=500)
    await harness.sold_through_share("o1", "alice", "bob", [("sku", 2_000, "")])
    report = await http.get("/v1/reports/summary", headers=admin)
    board = await http.get("/v1/leaderboards/campaigns/c1", headers=harness.token("bob"))

    assert created.status_code == 201
    assert duplicate.status_code == 409
    assert report.json() == {
        "attributed_orders": 1,
        "paid_orders": 1,
        "referred_gmv_minor": 2_000,
        "refunded_minor": 0,
        "commission_by_kind": {"accrual": 100, "reversal": 0},
        "red_packets_granted": 1,
        "red_packets_minor": 500,
        "payable_minor": 600,
        "unbalanced_postings": 0,
    }
    assert board.json() == [{"rank": 1, "sharer_id": "alice", "referred_gmv_minor": 2_000}]
