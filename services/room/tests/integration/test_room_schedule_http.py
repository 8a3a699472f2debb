"""Rooms and schedules over HTTP against the real Postgres and Redis: scheduling,
rescheduling, cancelling, going live and ending; the host's slot cannot be double-booked,
even by concurrent requests; every refusal is a clear problem+json."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from services.kit.identity import Role
from services.kit.testing import unique
from services.room.tests.conftest import Server, new_room

PROBLEM_JSON = "application/problem+json"


def later(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


async def schedule(
    server: Server, merchant: str, role: Role = Role.OPERATOR, **changes: Any
) -> httpx.Response:
    headers = server.harness.headers(
        merchant, role, changes.get("host_id") if role is Role.HOST else None
    )
    return await server.client.post("/v1/rooms", json=new_room(**changes), headers=headers)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["detail"]
    return body


async def test_schedules_a_room_for_later_with_its_play_urls(server: Server) -> None:
    merchant = unique("m")
    response = await schedule(server, merchant, starts_at=later(30))
    assert response.status_code == 201, response.text
    room = response.json()
    assert room["state"] == "scheduled"
    assert room["channels"] == ["mini_program", "app"]
    assert room["play_urls"]["hls"].endswith(".m3u8")
    read = await server.client.get(
        f"/v1/rooms/{room['room_id']}", headers=server.harness.headers(merchant, Role.VIEWER)
    )
    assert read.json()["title"] == "Autumn lipsticks"


async def test_a_room_scheduled_without_a_start_begins_now(server: Server) -> None:
    response = await schedule(server, unique("m"))
    starts_at = datetime.fromisoformat(response.json()["starts_at"])
    assert abs((starts_at - datetime.now(UTC)).total_seconds()) < 5


async def test_refuses_a_start_in_the_past(server: Server) -> None:
    body = assert_problem(await schedule(server, unique("m"), starts_at=later(-10)), 422)
    assert "past" in body["detail"]


async def test_refuses_unknown_channels_and_bad_cover_urls(server: Server) -> None:
    merchant = unique("m")
    assert_problem(await schedule(server, merchant, channels=["tv"]), 422)
    assert_problem(await schedule(server, merchant, cover_url="ftp://x/y.jpg"), 422)


async def test_refuses_an_overlapping_room_of_the_same_host(server: Server) -> None:
    merchant, host = unique("m"), unique("host")
    first = await schedule(server, merchant, host_id=host, starts_at=later(60))
    assert first.status_code == 201
    overlapping = await schedule(server, merchant, host_id=host, starts_at=later(90))
    assert "already has" in assert_problem(overlapping, 409)["detail"]
    after = await schedule(server, merchant, host_id=host, starts_at=later(121))
    assert after.status_code == 201


async def test_concurrent_bookings_of_one_slot_leave_exactly_one_room(server: Server) -> None:
    merchant, host = unique("m"), unique("host")
    starts_at = later(300)
    responses = await asyncio.gather(
        *(schedule(server, merchant, host_id=host, starts_at=starts_at) for _ in range(12))
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 11


async def test_one_merchant_runs_several_rooms_live_in_parallel(server: Server) -> None:
    merchant = unique("m")
    operator = server.harness.headers(merchant, Role.OPERATOR)
    rooms = [(await schedule(server, merchant)).json()["room_id"] for _ in range(3)]
    for room_id in rooms:
        started = await server.client.post(f"/v1/rooms/{room_id}/start", headers=operator)
        assert started.json()["state"] == "live"


async def test_rescheduling_frees_the_old_slot_and_cancelling_frees_the_new(
    server: Server,
) -> None:
    merchant, host = unique("m"), unique("host")
    operator = server.harness.headers(merchant, Role.OPERATOR)
    room_id = (await schedule(server, merchant, host_id=host, starts_at=later(60))).json()[
        "room_id"
    ]
    moved = await server.client.post(
        f"/v1/rooms/{room_id}/reschedule", json={"starts_at": later(600)}, headers=operator
    )
    assert moved.status_code == 200
    assert (await schedule(server, merchant, host_id=host, starts_at=later(60))).status_code == 201
    assert_problem(await schedule(server, merchant, host_id=host, starts_at=later(610)), 409)
    cancelled = await server.client.post(
        f"/v1/rooms/{room_id}/cancel", json={"reason": "host ill"}, headers=operator
    )
    assert cancelled.json()["state"] == "cancelled"
    assert (await schedule(server, merchant, host_id=host, starts_at=later(610))).status_code == 201


async def test_a_host_runs_their_own_room_but_not_another_hosts(server: Server) -> None:
    merchant, host = unique("m"), unique("host")
    mine = await schedule(server, merchant, role=Role.HOST, host_id=host)
    assert mine.status_code == 201
    room_id = mine.json()["room_id"]
    as_host = server.harness.headers(merchant, Role.HOST, host)
    as_other_host = server.harness.headers(merchant, Role.HOST)
    as_viewer = server.harness.headers(merchant, Role.VIEWER)
    assert_problem(await server.client.post(f"/v1/rooms/{room_id}/start", headers=as_viewer), 403)
    assert_problem(
        await server.client.post(f"/v1/rooms/{room_id}/start", headers=as_other_host), 403
    )
    started = await server.client.post(f"/v1/rooms/{room_id}/start", headers=as_host)
    assert started.json()["state"] == "live"
    stream = await server.client.get(f"/v1/rooms/{room_id}/stream", headers=as_host)
    assert stream.json()["push_url"].startswith("rtmp://")
    assert_problem(await server.client.get(f"/v1/rooms/{room_id}/stream", headers=as_viewer), 403)


async def test_a_host_cannot_schedule_another_host(server: Server) -> None:
    merchant = unique("m")
    headers = server.harness.headers(merchant, Role.HOST)
    response = await server.client.post(
        "/v1/rooms", json=new_room(host_id=unique("someone-else")), headers=headers
    )
    assert_problem(response, 403)


async def test_a_room_goes_live_once_and_ends_once(server: Server) -> None:
    merchant = unique("m")
    operator = server.harness.headers(merchant, Role.OPERATOR)
    room_id = (await schedule(server, merchant)).json()["room_id"]
    assert_problem(await server.client.post(f"/v1/rooms/{room_id}/end", headers=operator), 409)
    await server.client.post(f"/v1/rooms/{room_id}/start", headers=operator)
    assert_problem(await server.client.post(f"/v1/rooms/{room_id}/start", headers=operator), 409)
    ended = await server.client.post(f"/v1/rooms/{room_id}/end", headers=operator)
    assert ended.json()["state"] == "ended"
    assert_problem(
        await server.client.post(
            f"/v1/rooms/{room_id}/reschedule", json={"starts_at": later(5)}, headers=operator
        ),
        409,
    )


async def test_another_merchants_room_does_not_exist_for_the_caller(server: Server) -> None:
    room_id = (await schedule(server, unique("m"))).json()["room_id"]
    stranger = server.harness.headers(unique("m"), Role.OPERATOR)
    assert_problem(await server.client.get(f"/v1/rooms/{room_id}", headers=stranger), 404)
    assert_problem(await server.client.post(f"/v1/rooms/{room_id}/start", headers=stranger), 404)


async def test_a_room_id_is_taken_once(server: Server) -> None:
    merchant, room_id = unique("m"), unique("room")
    assert (await schedule(server, merchant, room_id=room_id)).status_code == 201
    assert_problem(await schedule(server, merchant, room_id=room_id, starts_at=later(600)), 409)


async def test_no_token_is_a_401(server: Server) -> None:
    assert_problem(await server.client.post("/v1/rooms", json=new_room()), 401)
