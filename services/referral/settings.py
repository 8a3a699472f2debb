from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.kit.settings import Environment, ServiceSettings

DEVELOPMENT_SHARE_CODE_KEY = "referral-development-share-code-key"


CARD_FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
"""WenQuanYi Micro Hei (Debian's ``fonts-wqy-microhei``): Chinese, Japanese, Korean and Latin
in one font, 5 MB. Pillow draws each string in one font, without per-glyph fallback, so the
cards' font must cover Chinese and Latin alike."""


class ReferralSettings(ServiceSettings):
    """Environment prefix ``REFERRAL_``; defaults point at the local stack."""

    model_config = SettingsConfigDict(env_prefix="REFERRAL_", extra="ignore")

    service_name: str = "referral"
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:55432/referral"
    http_port: int = 8106
    room_events_topic: str = "room.events"
    order_events_topic: str = "order.events"
    share_code_key: SecretStr = SecretStr(DEVELOPMENT_SHARE_CODE_KEY)
    """Signs share codes (HMAC-SHA256). Rotating it invalidates every code minted before."""
    h5_base_url: str = "https://h5.livecommerce.example"
    app_scheme: str = "livecommerce"
    attribution_window_seconds: int = Field(default=24 * 3600, ge=60)
    """The last-touch window of a merchant without a programme of its own."""
    mint_limit_per_minute: int = Field(default=20, ge=1)
    """Share codes one user may mint per minute (velocity limit)."""
    payout_retry_interval_seconds: float = Field(default=5.0, gt=0)
    card_font_path: str = CARD_FONT
    """A TrueType font (or collection) for invitation cards, with glyphs for every script
    the cards show: the hosts' names and room titles are mostly Chinese. Pillow's built-in
    font if it is missing, which has Latin glyphs only."""

    @model_validator(mode="after")
    def _refuse_development_share_code_key(self) -> Self:
        if (
            self.environment is Environment.PRODUCTION
            and self.share_code_key.get_secret_value() == DEVELOPMENT_SHARE_CODE_KEY
        ):
            raise ValueError("the development share-code key is refused in production")
        return self
