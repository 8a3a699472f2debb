"""Comment rules (closed rooms, mutes, size, banned words even when disguised, "comment to
buy") and lucky draws (distinct winners, reproducible from the seed, canonical candidates)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.kit.errors import InvalidArgumentError
from services.room.domain.comments import (
    BannedWordError,
    CommentsClosedError,
    InvalidCommentError,
    MutedError,
    PostComment,
    check_comment,
    is_buy_request,
)
from services.room.domain.draws import (
    DrawPool,
    HoldDraw,
    candidate_list,
    candidates_sha256,
    draw_winners,
    hold_draw,
    validate_draw,
)
from services.room.domain.room import (
    BannedWordsChanged,
    Moderation,
    Room,
    RoomState,
)

NOW = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


def room(state: RoomState = RoomState.LIVE, muted: frozenset[str] = frozenset()) -> Room:
    return Room("m1", "r1", host_id="h", state=state, moderation=Moderation(muted=muted))


def post(text: str, viewer: str = "fan") -> PostComment:
    return PostComment("m1", "r1", viewer, text)


def test_a_live_room_takes_a_trimmed_comment() -> None:
    assert check_comment(room(), post("  so pretty  ")) == "so pretty"


def test_comments_are_closed_outside_a_live_room() -> None:
    with pytest.raises(CommentsClosedError):
        check_comment(room(RoomState.SCHEDULED), post("hi"))


def test_a_muted_viewer_cannot_comment() -> None:
    with pytest.raises(MutedError):
        check_comment(room(muted=frozenset({"troll"})), post("hi", "troll"))


@pytest.mark.parametrize("text", ["", "   ", "x" * 301, "line\nbreak"])
def test_refuses_empty_oversized_or_multi_line_comments(text: str) -> None:
    with pytest.raises(InvalidCommentError):
        check_comment(room(), post(text))


@pytest.mark.parametrize("text", ["a SCAM!", "ｓｃａｍ here", "Scammer"])
def test_banned_words_are_found_in_any_case_and_width(text: str) -> None:
    banned = Room("m1", "r1", state=RoomState.LIVE).apply(BannedWordsChanged("r1", ("scam",)))
    with pytest.raises(BannedWordError):
        check_comment(banned, post(text))


def test_a_buy_request_is_a_whole_comment_that_is_a_keyword() -> None:
    keywords = ["buy", "想要"]
    assert is_buy_request(" BUY ", keywords)
    assert is_buy_request("想要", keywords)
    assert not is_buy_request("don't buy this", keywords)


def draw(**changes: object) -> HoldDraw:
    values: dict[str, object] = {
        "merchant_id": "m1",
        "room_id": "r1",
        "draw_id": "d1",
        "prize": "Lipstick",
        "prizes": 3,
        "pool": DrawPool.PRESENT,
    }
    values.update(changes)
    return HoldDraw(**values)  # type: ignore[arg-type]


def test_the_winners_are_distinct_and_follow_from_the_seed_alone() -> None:
    candidates = candidate_list(f"u{i}" for i in range(100))
    winners = draw_winners("seed-1", candidates, 10)
    assert len(set(winners)) == 10
    assert draw_winners("seed-1", list(candidates), 10) == winners
    assert draw_winners("seed-2", candidates, 10) != winners


def test_fewer_candidates_than_prizes_all_win_once() -> None:
    assert sorted(draw_winners("s", ["b", "a"], 5)) == ["a", "b"]


def test_the_candidate_list_is_canonical_whatever_order_and_repeats() -> None:
    one = candidate_list(["c", "a", "b", "a"])
    other = candidate_list(["b", "c", "a"])
    assert one == other == ["a", "b", "c"]
    assert candidates_sha256(one) == candidates_sha256(other)


def test_a_held_draw_records_seed_hash_and_count() -> None:
    held = hold_draw(draw(), ["x", "y", "x", "z", "w"], "s", NOW)
    assert held.candidate_count == 4
    assert held.candidates_sha256 == candidates_sha256(["w", "x", "y", "z"])
    assert held.winners == draw_winners("s", ["w", "x", "y", "z"], 3)


@pytest.mark.parametrize(
    "changes",
    [
        {"prizes": 0},
        {"prize": " "},
        {"pool": DrawPool.COMMENTERS},
        {"keyword": "want"},
        {"draw_id": "has space"},
    ],
)
def test_refuses_a_malformed_draw(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        validate_draw(draw(**changes))
