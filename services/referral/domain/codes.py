"""Share codes: unguessable, signed by the service, bound to their merchant.

A code is 26 characters of lowercase base32: 10 random bytes (80 bits: unguessable) followed
by the first 6 bytes of HMAC-SHA256(key, merchant_id ":" nonce). A code can therefore be
checked without a database round trip, and a forged or altered one, or one of another
merchant, is refused as such (:class:`ForgedShareCodeError`) instead of looking unknown.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from urllib.parse import quote

from services.kit.errors import InvalidArgumentError, NotFoundError, ResourceExhaustedError
from services.kit.tenancy import validate_id, validate_merchant_id

NONCE_BYTES = 10
TAG_BYTES = 6
CODE_LENGTH = 26
_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")


class MalformedShareCodeError(InvalidArgumentError):
    pass


class ForgedShareCodeError(InvalidArgumentError):
    """The code is well formed but its signature does not verify for this merchant."""


class ShareCodeNotFoundError(NotFoundError):
    pass


class MintingTooFastError(ResourceExhaustedError):
    pass


class ShareTargetKind(StrEnum):
    ROOM = "room"
    PRODUCT = "product"
    GROUP_BUY = "group_buy"


_MINI_PROGRAM_PAGES = {
    ShareTargetKind.ROOM: "pages/room/index",
    ShareTargetKind.PRODUCT: "pages/product/index",
    ShareTargetKind.GROUP_BUY: "pages/group/index",
}


@dataclass(frozen=True)
class MintShareCode:
    merchant_id: str
    sharer_id: str
    target_kind: ShareTargetKind
    target_id: str


@dataclass(frozen=True)
class ShareCodeCreated:
    code: str
    sharer_id: str
    target_kind: ShareTargetKind
    target_id: str
    created_at: datetime


@dataclass(frozen=True)
class ShareLinks:
    mini_program_path: str
    h5_url: str
    app_link: str


@dataclass(frozen=True)
class ShareCode:
    merchant_id: str
    code: str
    sharer_id: str
    target_kind: ShareTargetKind
    target_id: str
    created_at: datetime

    @staticmethod
    def stream_id(merchant_id: str, code: str) -> str:
        return f"share:{validate_merchant_id(merchant_id)}:{code}"

    @classmethod
    def created(cls, merchant_id: str, event: ShareCodeCreated) -> ShareCode:
        return cls(
            merchant_id=merchant_id,
            code=event.code,
            sharer_id=event.sharer_id,
            target_kind=event.target_kind,
            target_id=event.target_id,
            created_at=event.created_at,
        )

    def links(self, h5_base_url: str, app_scheme: str) -> ShareLinks:
        target = quote(self.target_id, safe="")
        return ShareLinks(
            mini_program_path=f"{_MINI_PROGRAM_PAGES[self.target_kind]}?id={target}&sc={self.code}",
            h5_url=f"{h5_base_url.rstrip('/')}/s/{self.code}",
            app_link=f"{app_scheme}://{self.target_kind.value}/{target}?sc={self.code}",
        )


class ShareCodeSigner:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a share-code key has at least 16 bytes")
        self._key = key

    def _tag(self, merchant_id: str, nonce: bytes) -> bytes:
        message = merchant_id.encode() + b":" + nonce
        return hmac.new(self._key, message, hashlib.sha256).digest()[:TAG_BYTES]

    def new_code(self, merchant_id: str, nonce: bytes | None = None) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES) if nonce is None else nonce
        if len(nonce) != NONCE_BYTES:
            raise ValueError(f"a nonce has {NONCE_BYTES} bytes")
        raw = nonce + self._tag(merchant_id, nonce)
        return base64.b32encode(raw).decode().rstrip("=").lower()

    def verify(self, merchant_id: str, code: str) -> str:
        """The code itself if it is well formed and signed for this merchant."""
        if len(code) != CODE_LENGTH or not set(code) <= _ALPHABET:
            raise MalformedShareCodeError(
                f"a share code is {CODE_LENGTH} characters of a-z and 2-7"
            )
        try:
            raw = base64.b32decode(code.upper() + "=" * 6)
        except binascii.Error as error:
            raise MalformedShareCodeError("a share code is base32") from error
        nonce, tag = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
        # 26 characters carry 130 bits for 128: the last one's 2 spare bits must be zero,
        # or two spellings of one code would both verify.
        canonical = base64.b32encode(raw).decode().rstrip("=").lower()
        if canonical != code or not hmac.compare_digest(tag, self._tag(merchant_id, nonce)):
            raise ForgedShareCodeError("the share code's signature does not verify")
        return code

    def is_genuine(self, merchant_id: str, code: str) -> bool:
        try:
            self.verify(merchant_id, code)
        except InvalidArgumentError:
            return False
        return True


def validate_mint(command: MintShareCode) -> MintShareCode:
    validate_merchant_id(command.merchant_id)
    validate_id(command.sharer_id, "sharer id")
    validate_id(command.target_id, f"{command.target_kind.value} id")
    return command
