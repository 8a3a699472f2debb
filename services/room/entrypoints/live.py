"""The real-time push endpoint: a WebSocket per client of a room.

Protocol (docs/room.md): the client connects to ``/v1/rooms/{room_id}/live`` with its token
as ``access_token`` query parameter (browsers cannot set headers on a WebSocket) or an
Authorization header. The server sends JSON text messages, first a ``snapshot`` of the room,
then every push message of the room (``{"type", "room_id", "at", "data"}``, plus ``"to"``
on messages for one viewer only). Anything the client sends is ignored. Close codes:
4000 + the HTTP status of a refusal (4401 bad token, 4404 no such room), 1013 when the
client read too slowly and was dropped (reconnect), 1001 when the server shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from services.kit.errors import KitError, UnauthenticatedError
from services.kit.identity import Caller, TokenVerifier
from services.kit.runtime import until_first_done
from services.room.adapters.push import PushHub
from services.room.application.push import lineup_data
from services.room.bootstrap import RoomService

live_router = APIRouter(prefix="/v1")

TOO_SLOW = 1013


def _caller(websocket: WebSocket) -> Caller:
    verifier: TokenVerifier = websocket.app.state.verifier
    token = websocket.query_params.get("access_token")
    if token:
        return verifier.verify(token)
    header = websocket.headers.get("authorization")
    if header is None:
        raise UnauthenticatedError("missing access_token")
    return verifier.verify_header(header)


async def _drain_incoming(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()


async def _pump(websocket: WebSocket, queue: asyncio.Queue[str]) -> None:
    while True:
        await websocket.send_text(await queue.get())


@live_router.websocket("/rooms/{room_id}/live")
async def live(websocket: WebSocket, room_id: str) -> None:
    service: RoomService = websocket.app.state.room
    hub: PushHub = websocket.app.state.hub
    await websocket.accept()
    try:
        caller = _caller(websocket)
        merchant_id = caller.tenant()
        room = await service.rooms.get(caller, merchant_id, room_id)
    except KitError as error:
        await websocket.close(code=4000 + int(error.http_status), reason=error.detail[:120])
        return
    client = hub.connect(merchant_id, room_id, caller.subject)
    try:
        snapshot = {
            "type": "snapshot",
            "room_id": room_id,
            "at": datetime.now(UTC).isoformat(),
            "data": {
                "state": room.state.value,
                "pinned_sku": room.pinned_sku,
                "lineup": lineup_data(room),
                "title": room.title,
            },
        }
        await websocket.send_text(json.dumps(snapshot, ensure_ascii=False))
        await until_first_done(
            _pump(websocket, client.queue), _drain_incoming(websocket), client.dropped.wait()
        )
        if client.dropped.is_set():
            with contextlib.suppress(Exception):
                await websocket.close(code=TOO_SLOW, reason="too slow: reconnect")
    finally:
        hub.disconnect(merchant_id, room_id, client)
