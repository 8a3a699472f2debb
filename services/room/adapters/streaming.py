"""The built-in streaming provider: URLs derived from configured bases (a CDN that takes
RTMP pushes and serves FLV and HLS by stream name, the shape most providers share). A real
provider with its own API is another adapter of the same port."""

from __future__ import annotations

import hashlib
import hmac

from services.room.application.ports import StreamUrls


class DerivedStreamUrls:
    def __init__(self, *, push_base: str, play_base: str, key_secret: str) -> None:
        self._push_base = push_base.rstrip("/")
        self._play_base = play_base.rstrip("/")
        self._secret = key_secret.encode()

    def _stream(self, merchant_id: str, room_id: str) -> str:
        """A stream name that is stable for the room and reveals nothing of other rooms."""
        digest = hashlib.sha256(f"{merchant_id}\n{room_id}".encode()).hexdigest()[:24]
        return f"{merchant_id}-{digest}"

    def urls(self, merchant_id: str, room_id: str) -> StreamUrls:
        stream = self._stream(merchant_id, room_id)
        key = hmac.new(self._secret, stream.encode(), hashlib.sha256).hexdigest()[:32]
        return StreamUrls(
            push_url=f"{self._push_base}/{stream}?key={key}",
            play_urls={
                "flv": f"{self._play_base}/{stream}.flv",
                "hls": f"{self._play_base}/{stream}.m3u8",
            },
        )
