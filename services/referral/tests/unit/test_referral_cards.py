"""Invitation cards rendered in memory with Pillow and segno."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

from PIL import Image

from services.referral.adapters.cards import HEIGHT, WIDTH, PillowCardRenderer
from services.referral.application.ports import CardContent
from services.referral.settings import ReferralSettings

CONTENT = CardContent(
    sharer_name="Alice " * 20,
    room_title="Autumn lipsticks",
    starts_at=datetime(2026, 5, 1, 19, 30, tzinfo=UTC),
    link="https://h5.livecommerce.example/s/abcdefghijklmnopqrstuvwxyz",
)


def _render(font_path: str) -> Image.Image:
    return Image.open(BytesIO(PillowCardRenderer(font_path).render(CONTENT))).convert("RGB")


def test_a_card_is_a_png_with_a_qr_code_in_black_on_white() -> None:
    image = _render("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

    colours = {colour for _, colour in image.crop((200, 500, 520, 800)).getcolors(1 << 16) or []}

    assert image.size == (WIDTH, HEIGHT)
    assert {(0, 0, 0), (255, 255, 255)} <= colours


def test_a_missing_font_falls_back_to_pillows_own_and_still_renders() -> None:
    assert _render("/nonexistent/font.ttf").size == (WIDTH, HEIGHT)


def test_the_same_content_renders_the_same_bytes() -> None:
    renderer = PillowCardRenderer("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

    assert renderer.render(CONTENT) == renderer.render(CONTENT)


def _title_band(title: str) -> bytes:
    """The card's title band, rendered with the cards' default font."""
    renderer = PillowCardRenderer(ReferralSettings().card_font_path)
    card = Image.open(BytesIO(renderer.render(replace(CONTENT, room_title=title))))
    return card.convert("RGB").crop((0, 270, WIDTH, 360)).tobytes()


def test_a_chinese_room_title_is_drawn_with_its_own_glyphs_not_the_missing_glyph_box() -> None:
    # a font without Chinese draws every one of these characters as the same box, so two
    # titles of as many different characters would come out the same
    assert Path(ReferralSettings().card_font_path).is_file(), "make test installs the font"

    assert _title_band("今晚八点秒杀") != _title_band("口红专场福利")
