"""A live room over HTTP and its WebSocket: the line-up and the pinned product, comments
and their moderation, "comment to buy", and real-time push (a connected client gets a pin
within a second; a client that does not read is dropped)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from services.kit.identity import Role
from services.kit.testing import unique
from services.room.tests.conftest import Server, new_room


async def live_room(server: Server, merchant: str, skus: tuple[str, ...] = ()) -> str:
    operator = server.harness.headers(merchant, Role.OPERATOR)
    room_id: str = (
        await server.client.post("/v1/rooms", json=new_room(), headers=operator)
    ).json()["room_id"]
    for sku in skus:
        added = await server.client.post(
            f"/v1/rooms/{room_id}/lineup", json={"sku_id": sku}, headers=operator
        )
        assert added.status_code == 200, added.text
    await server.client.post(f"/v1/rooms/{room_id}/start", headers=operator)
    return room_id


async def next_of_type(ws: ClientConnection, kind: str, within: float = 1.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no {kind} message within {within} s")
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), remaining))
        if message["type"] == kind:
            return message


async def test_a_connected_client_gets_the_pin_within_a_second(server: Server) -> None:
    merchant = unique("m")
    room_id = await live_room(server, merchant, ("LIP-1", "LIP-2"))
    token = server.harness.token(merchant, Role.VIEWER)
    async with connect(server.ws_url(f"/v1/rooms/{room_id}/live", token)) as ws:
        snapshot = await next_of_type(ws, "snapshot")
        assert snapshot["data"]["state"] == "live"
        started = time.monotonic()
        pinned = await server.client.put(
            f"/v1/rooms/{room_id}/pin",
            json={"sku_id": "LIP-2"},
            headers=server.harness.headers(merchant, Role.OPERATOR),
        )
        assert pinned.json()["pinned_sku"] == "LIP-2"
        message = await next_of_type(ws, "product_pinned", within=1.0)
        assert message["data"]["sku_id"] == "LIP-2"
        assert time.monotonic() - started < 1.0


async def test_pins_only_products_on_the_shelf_of_the_lineup(server: Server) -> None:
    merchant = unique("m")
    operator = server.harness.headers(merchant, Role.OPERATOR)
    room_id = await live_room(server, merchant, ("A", "B", "C"))
    off = await server.client.put(
        f"/v1/rooms/{room_id}/lineup/B/shelf", json={"on_shelf": False}, headers=operator
    )
    assert off.json()["lineup"][1] == {"sku_id": "B", "on_shelf": False}
    for sku, status in (("B", 409), ("Z", 409), ("C", 200)):
        response = await server.client.put(
            f"/v1/rooms/{room_id}/pin", json={"sku_id": sku}, headers=operator
        )
        assert response.status_code == status, response.text
    reordered = await server.client.put(
        f"/v1/rooms/{room_id}/lineup-order", json={"sku_ids": ["C", "A", "B"]}, headers=operator
    )
    assert [i["sku_id"] for i in reordered.json()["lineup"]] == ["C", "A", "B"]
    removed = await server.client.delete(f"/v1/rooms/{room_id}/lineup/C", headers=operator)
    assert removed.json()["pinned_sku"] is None
    viewer = server.harness.headers(merchant, Role.VIEWER)
    refused = await server.client.put(
        f"/v1/rooms/{room_id}/pin", json={"sku_id": "A"}, headers=viewer
    )
    assert refused.status_code == 403


async def test_comments_are_posted_listed_and_deleted_by_operators(server: Server) -> None:
    merchant = unique("m")
    room_id = await live_room(server, merchant)
    viewer = server.harness.headers(merchant, Role.VIEWER, "fan-1")
    operator = server.harness.headers(merchant, Role.OPERATOR)
    posted = []
    for text in ("hello", "what colour is it?", "lovely"):
        response = await server.client.post(
            f"/v1/rooms/{room_id}/comments", json={"text": text}, headers=viewer
        )
        assert response.status_code == 201, response.text
        posted.append(response.json()["comment_id"])
    recent = await server.client.get(f"/v1/rooms/{room_id}/comments", headers=viewer)
    assert [c["text"] for c in recent.json()] == ["lovely", "what colour is it?", "hello"]
    refused = await server.client.delete(
        f"/v1/rooms/{room_id}/comments/{posted[1]}", headers=viewer
    )
    assert refused.status_code == 403
    deleted = await server.client.delete(
        f"/v1/rooms/{room_id}/comments/{posted[1]}", headers=operator
    )
    assert deleted.status_code == 200
    recent = await server.client.get(f"/v1/rooms/{room_id}/comments", headers=viewer)
    assert [c["text"] for c in recent.json()] == ["lovely", "hello"]


async def test_moderation_mutes_bans_words_and_slows_comments(server: Server) -> None:
    merchant = unique("m")
    room_id = await live_room(server, merchant)
    operator = server.harness.headers(merchant, Role.OPERATOR)
    troll = server.harness.headers(merchant, Role.VIEWER, "troll")
    fan = server.harness.headers(merchant, Role.VIEWER, "fan")
    comments = f"/v1/rooms/{room_id}/comments"

    async def post(headers: dict[str, str], text: str) -> int:
        response = await server.client.post(comments, json={"text": text}, headers=headers)
        if response.status_code != 201:
            assert response.headers["content-type"] == "application/problem+json"
        return response.status_code

    assert (
        await server.client.put(
            f"/v1/rooms/{room_id}/mutes/troll", json={"reason": "spam"}, headers=operator
        )
    ).status_code == 204
    assert await post(troll, "buy my stuff") == 403
    await server.client.put(
        f"/v1/rooms/{room_id}/banned-words", json={"words": ["Scam"]}, headers=operator
    )
    assert await post(fan, "this is a SCAM") == 422
    assert await post(fan, "x" * 301) == 422
    await server.client.put(
        f"/v1/rooms/{room_id}/slow-mode", json={"interval_seconds": 30}, headers=operator
    )
    assert await post(fan, "first") == 201
    assert await post(fan, "second") == 429
    moderation = await server.client.get(f"/v1/rooms/{room_id}/moderation", headers=operator)
    assert moderation.json() == {
        "muted": ["troll"],
        "banned_words": ["scam"],
        "slow_mode_seconds": 30,
    }
    assert (
        await server.client.get(f"/v1/rooms/{room_id}/moderation", headers=fan)
    ).status_code == 403


async def test_comment_to_buy_pushes_a_checkout_link_to_that_viewer_only(server: Server) -> None:
    merchant = unique("m")
    room_id = await live_room(server, merchant, ("LIP-1",))
    await server.client.put(
        f"/v1/rooms/{room_id}/pin",
        json={"sku_id": "LIP-1"},
        headers=server.harness.headers(merchant, Role.OPERATOR),
    )
    buyer_token = server.harness.token(merchant, Role.VIEWER, "buyer")
    other_token = server.harness.token(merchant, Role.VIEWER, "other")
    path = f"/v1/rooms/{room_id}/live"
    async with (
        connect(server.ws_url(path, buyer_token)) as buyer,
        connect(server.ws_url(path, other_token)) as other,
    ):
        await next_of_type(buyer, "snapshot")
        await next_of_type(other, "snapshot")
        await server.client.post(
            f"/v1/rooms/{room_id}/comments",
            json={"text": "BUY"},
            headers={"Authorization": f"Bearer {buyer_token}"},
        )
        link = await next_of_type(buyer, "checkout_link")
        assert link["data"]["sku_id"] == "LIP-1"
        assert "sku=LIP-1" in link["data"]["url"]
        assert (await next_of_type(other, "comment"))["data"]["text"] == "BUY"
        with pytest.raises(TimeoutError):
            await next_of_type(other, "checkout_link", within=0.3)


async def test_a_websocket_with_a_bad_token_or_unknown_room_is_closed_with_a_reason(
    server: Server,
) -> None:
    merchant = unique("m")
    token = server.harness.token(merchant, Role.VIEWER)
    async with connect(server.ws_url("/v1/rooms/nowhere/live", token)) as ws:
        await ws.wait_closed()
        assert ws.close_code == 4404
    async with connect(server.ws_url("/v1/rooms/nowhere/live", "not-a-token")) as ws:
        await ws.wait_closed()
        assert ws.close_code == 4401


async def test_joining_over_http_answers_the_room_and_its_visit(server: Server) -> None:
    merchant = unique("m")
    room_id = await live_room(server, merchant)
    viewer = server.harness.headers(merchant, Role.VIEWER, "fan")
    joined = await server.client.post(
        f"/v1/rooms/{room_id}/viewers/join",
        json={"channel": "h5", "share_code": "S1", "entry": "share_link"},
        headers=viewer,
    )
    assert joined.status_code == 200, joined.text
    assert joined.json()["new_visit"] is True
    assert joined.json()["room"]["state"] == "live"
    beat = await server.client.post(f"/v1/rooms/{room_id}/viewers/heartbeat", headers=viewer)
    assert beat.status_code == 204
    stats = await server.client.get(f"/v1/rooms/{room_id}/viewers/stats", headers=viewer)
    assert stats.json()["concurrent"] == 1
    left = await server.client.post(f"/v1/rooms/{room_id}/viewers/leave", headers=viewer)
    assert left.status_code == 200
    not_live = await server.client.post(
        f"/v1/rooms/{unique('room')}/viewers/join", json={"channel": "h5"}, headers=viewer
    )
    assert not_live.status_code == 404
    assert not_live.headers["content-type"] == "application/problem+json"
