"""Invitation cards rendered with Pillow, the QR code encoded by segno; cached in Postgres
(one row a user and room, replaced when what the card shows changes)."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import asyncpg
import segno
from PIL import Image, ImageDraw, ImageFont

from services.kit.logging import get_logger
from services.referral.application.ports import CardContent

log = get_logger(__name__)

WIDTH, HEIGHT = 720, 1080
BACKGROUND = (255, 244, 236)
BANNER = (226, 61, 40)
INK = (51, 51, 51)
MUTED = (120, 120, 120)
WHITE = (255, 255, 255)
QR_MODULE = 10
QR_INK = (0, 0, 0)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


class PillowCardRenderer:
    def __init__(self, font_path: str) -> None:
        self._font_path = font_path if Path(font_path).is_file() else ""
        if not self._font_path:
            log.warning(
                "card font missing: cards use Pillow's built-in font, without Chinese glyphs",
                font_path=font_path,
            )

    def _font(self, size: int) -> Font:
        if self._font_path:
            return ImageFont.truetype(self._font_path, size)
        return ImageFont.load_default(size)

    def _fit(self, draw: ImageDraw.ImageDraw, text: str, size: int, width: int) -> tuple[str, Font]:
        """The text in the largest font up to ``size`` that fits ``width`` (ellipsised at 14)."""
        while True:
            font = self._font(size)
            if draw.textlength(text, font=font) <= width or size <= 14:
                break
            size -= 2
        while text and draw.textlength(text, font=font) > width:
            text = text[:-2] + "…"
        return text, font

    def render(self, content: CardContent) -> bytes:
        image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, WIDTH, 240), fill=BANNER)
        text, font = self._fit(draw, content.sharer_name, 44, WIDTH - 80)
        draw.text((40, 60), text, font=font, fill=WHITE)
        draw.text((40, 140), "invites you to a live stream", font=self._font(30), fill=WHITE)
        text, font = self._fit(draw, content.room_title, 48, WIDTH - 80)
        draw.text((40, 290), text, font=font, fill=INK)
        when = (
            content.starts_at.strftime("%Y-%m-%d %H:%M UTC")
            if content.starts_at
            else "starting soon"
        )
        draw.text((40, 370), f"Live at {when}", font=self._font(32), fill=MUTED)
        self._draw_qr(image, content.link, top=500)
        note = "Scan to watch and shop"
        font = self._font(28)
        x = (WIDTH - draw.textlength(note, font=font)) / 2
        draw.text((x, HEIGHT - 110), note, font=font, fill=MUTED)
        out = BytesIO()
        image.save(out, format="PNG", optimize=True)
        return out.getvalue()

    @staticmethod
    def _draw_qr(image: Image.Image, link: str, top: int) -> None:
        matrix = segno.make(link, error="m", micro=False).matrix
        size = len(matrix) * QR_MODULE
        quiet = 4 * QR_MODULE
        left = (WIDTH - size) // 2
        draw = ImageDraw.Draw(image)
        draw.rectangle(
            (left - quiet, top - quiet, left + size + quiet, top + size + quiet), fill=WHITE
        )
        for y, row in enumerate(matrix):
            for x, dark in enumerate(row):
                if dark:
                    x0, y0 = left + x * QR_MODULE, top + y * QR_MODULE
                    draw.rectangle((x0, y0, x0 + QR_MODULE - 1, y0 + QR_MODULE - 1), fill=QR_INK)


class PostgresCardCache:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(
        self, merchant_id: str, room_id: str, user_id: str, fingerprint: str
    ) -> bytes | None:
        png: bytes | None = await self._pool.fetchval(
            "SELECT png FROM invitation_cards WHERE merchant_id = $1 AND room_id = $2"
            " AND user_id = $3 AND fingerprint = $4",
            merchant_id,
            room_id,
            user_id,
            fingerprint,
        )
        return png

    async def put(
        self, merchant_id: str, room_id: str, user_id: str, fingerprint: str, png: bytes
    ) -> None:
        await self._pool.execute(
            "INSERT INTO invitation_cards (merchant_id, room_id, user_id, fingerprint, png)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (merchant_id, room_id, user_id)"
            " DO UPDATE SET fingerprint = $4, png = $5, rendered_at = now()",
            merchant_id,
            room_id,
            user_id,
            fingerprint,
            png,
        )
