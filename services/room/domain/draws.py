"""Lucky draws: N prizes among the room's present viewers or the commenters of a keyword.

Auditable by anyone with the draw's record: the candidates are sorted and de-duplicated,
their SHA-256 is published, and the winners are what ``random.Random(seed).sample`` picks
from that sorted list. Re-running :func:`draw_winners` with the recorded seed and candidate
list gives the same winners. One win per user per draw: a sample has no repeats.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.kit.errors import InvalidArgumentError
from services.kit.tenancy import validate_id, validate_merchant_id

MAX_PRIZES = 1000
MAX_PRIZE_LENGTH = 100
MAX_KEYWORD_LENGTH = 50


class InvalidDrawError(InvalidArgumentError):
    pass


class DrawPool(StrEnum):
    PRESENT = "present"
    COMMENTERS = "commenters"


@dataclass(frozen=True)
class HoldDraw:
    merchant_id: str
    room_id: str
    draw_id: str
    prize: str
    prizes: int
    pool: DrawPool
    keyword: str = ""
    seed: str = ""
    """Empty: a fresh random seed. An operator may give one to repeat a published draw."""


@dataclass(frozen=True)
class DrawHeld:
    room_id: str
    draw_id: str
    prize: str
    prizes: int
    pool: DrawPool
    keyword: str
    seed: str
    candidates_sha256: str
    candidate_count: int
    winners: tuple[str, ...]
    held_at: datetime


def draw_stream_id(merchant_id: str, room_id: str, draw_id: str) -> str:
    return f"draw:{validate_merchant_id(merchant_id)}:{room_id}:{draw_id}"


def validate_draw(command: HoldDraw) -> HoldDraw:
    validate_id(command.draw_id, "draw id")
    if not 1 <= command.prizes <= MAX_PRIZES:
        raise InvalidDrawError(f"a draw has 1 to {MAX_PRIZES} prizes")
    if not command.prize.strip() or len(command.prize) > MAX_PRIZE_LENGTH:
        raise InvalidDrawError(f"a prize is named in 1 to {MAX_PRIZE_LENGTH} characters")
    keyword = command.keyword.strip()
    if (command.pool is DrawPool.COMMENTERS) != bool(keyword):
        raise InvalidDrawError("a keyword is given exactly when the pool is commenters")
    if len(keyword) > MAX_KEYWORD_LENGTH:
        raise InvalidDrawError(f"a keyword is at most {MAX_KEYWORD_LENGTH} characters")
    return command


def candidate_list(candidates: Iterable[str]) -> list[str]:
    """The canonical candidate list: each user once, sorted."""
    return sorted(set(candidates))


def candidates_sha256(candidates: list[str]) -> str:
    return hashlib.sha256("\n".join(candidates).encode()).hexdigest()


def draw_winners(seed: str, candidates: list[str], prizes: int) -> tuple[str, ...]:
    """The winners ``seed`` draws from the canonical ``candidates`` (all of them when there
    are fewer candidates than prizes)."""
    rng = random.Random(seed)
    return tuple(rng.sample(candidates, min(prizes, len(candidates))))


def hold_draw(command: HoldDraw, candidates: Iterable[str], seed: str, now: datetime) -> DrawHeld:
    listed = candidate_list(candidates)
    return DrawHeld(
        room_id=command.room_id,
        draw_id=command.draw_id,
        prize=command.prize.strip(),
        prizes=command.prizes,
        pool=command.pool,
        keyword=command.keyword.strip(),
        seed=seed,
        candidates_sha256=candidates_sha256(listed),
        candidate_count=len(listed),
        winners=draw_winners(seed, listed, command.prizes),
        held_at=now,
    )
