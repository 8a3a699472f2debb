"""The micro-batcher: bursts become one batch, every item gets its own result, and a busy
batcher with a minimum interval gathers what arrives one by one. The reply pacer: answers
of an idle server go at once, those of a busy one together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.kit.batching import MicroBatcher, ReplyPacer, record_or_give_back, until_recorded
from services.kit.errors import OutcomeUnknownError


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def flush(self, batch: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(batch))
        return [ValueError(f"odd {n}") if n % 2 else n * 10 for n in batch]


async def test_a_burst_submitted_together_is_one_batch_and_each_item_gets_its_own_result() -> None:
    recorder = Recorder()
    batcher: MicroBatcher[int, int] = MicroBatcher(recorder.flush)

    results = await asyncio.gather(*(batcher.submit(n) for n in range(6)), return_exceptions=True)

    assert recorder.batches == [[0, 1, 2, 3, 4, 5]]
    assert results[0::2] == [0, 20, 40]
    assert [str(e) for e in results[1::2]] == ["odd 1", "odd 3", "odd 5"]


async def test_items_arriving_one_by_one_go_alone_without_a_minimum_interval() -> None:
    recorder = Recorder()
    batcher: MicroBatcher[int, int] = MicroBatcher(recorder.flush)

    for n in (0, 2, 4):
        await batcher.submit(n)

    assert recorder.batches == [[0], [2], [4]]


async def test_a_busy_batcher_with_a_minimum_interval_gathers_items_arriving_one_by_one() -> None:
    recorder = Recorder()
    batcher: MicroBatcher[int, int] = MicroBatcher(recorder.flush, min_interval=1.0)
    assert await asyncio.wait_for(batcher.submit(0), 0.5) == 0  # idle: flushed at once

    later = []
    for n in (2, 4, 6):
        later.append(asyncio.ensure_future(batcher.submit(n)))
        await asyncio.sleep(0.001)  # each arrives in a turn of its own

    assert await asyncio.gather(*later) == [20, 40, 60]
    assert recorder.batches == [[0], [2, 4, 6]]


async def test_a_full_batch_goes_at_once_whatever_the_minimum_interval() -> None:
    recorder = Recorder()
    batcher: MicroBatcher[int, int] = MicroBatcher(recorder.flush, max_batch=3, min_interval=60.0)
    assert await asyncio.wait_for(batcher.submit(8), 0.5) == 80

    full = [asyncio.ensure_future(batcher.submit(n)) for n in (10, 12, 14)]

    assert await asyncio.wait_for(asyncio.gather(*full), 5) == [100, 120, 140]
    assert recorder.batches == [[8], [10, 12, 14]]


async def test_a_repeat_reads_until_the_first_is_recorded_and_gives_up_after_its_waits() -> None:
    reads: list[int] = []

    async def recorded_on_third_read() -> str | None:
        reads.append(1)
        return "hold" if len(reads) == 3 else None

    async def never() -> str | None:
        return None

    assert await until_recorded(recorded_on_third_read, waits=(0.001, 0.001, 0.001)) == "hold"
    assert len(reads) == 3
    assert await until_recorded(never, waits=(0.001,)) is None


async def test_what_a_group_commit_could_not_record_is_given_back_by_the_batch_itself() -> None:
    given_back: list[str] = []

    async def record(batch: Sequence[str]) -> list[BaseException | None]:
        return [ValueError(item) if item.startswith("bad") else None for item in batch]

    async def give_back(item: str) -> None:
        if item == "bad-and-redis-down":
            raise ConnectionError("redis is down")
        given_back.append(item)

    results = await record_or_give_back(["a", "bad", "b", "bad-and-redis-down"], record, give_back)

    assert [type(r) for r in results] == [type(None), ValueError, type(None), ValueError]
    assert given_back == ["bad"]


async def test_a_group_commit_that_fails_as_a_whole_gives_back_every_item() -> None:
    given_back: list[str] = []

    async def record(batch: Sequence[str]) -> list[BaseException | None]:
        raise ConnectionResetError("the database went away")

    async def give_back(item: str) -> None:
        given_back.append(item)

    results = await record_or_give_back(["a", "b"], record, give_back)

    assert all(isinstance(r, ConnectionResetError) for r in results)
    assert given_back == ["a", "b"]


async def test_a_group_commit_that_cannot_tell_whether_it_was_recorded_gives_nothing_back() -> None:
    given_back: list[str] = []

    async def record(batch: Sequence[str]) -> list[BaseException | None]:
        raise OutcomeUnknownError("the database went away while this was being saved")

    async def give_back(item: str) -> None:
        given_back.append(item)

    results = await record_or_give_back(["a", "b"], record, give_back)

    assert all(isinstance(r, OutcomeUnknownError) for r in results)
    assert given_back == []


def _returns_without_waiting(pacer: ReplyPacer) -> bool:
    turn = pacer.turn()
    try:
        turn.send(None)
    except StopIteration:
        return True
    turn.close()
    return False


async def test_an_idle_pacer_lets_an_answer_go_without_waiting() -> None:
    pacer = ReplyPacer(0.05)

    assert _returns_without_waiting(pacer)


async def test_a_pacer_without_an_interval_never_waits() -> None:
    pacer = ReplyPacer(0)

    assert all(_returns_without_waiting(pacer) for _ in range(3))


async def test_answers_to_a_busy_pacer_leave_together_an_interval_after_the_last_group() -> None:
    loop = asyncio.get_running_loop()
    pacer = ReplyPacer(0.05)
    await pacer.turn()
    first = loop.time()
    woken: list[float] = []

    async def answer() -> None:
        await pacer.turn()
        woken.append(loop.time())

    await asyncio.gather(answer(), answer(), answer())

    assert min(woken) - first >= 0.045  # none before the interval
    assert max(woken) - min(woken) < 0.01  # one group, not one interval each
    assert not _returns_without_waiting(pacer)  # it just sent a group: busy again


async def test_a_cancelled_answer_does_not_hold_back_the_others() -> None:
    pacer = ReplyPacer(0.05)
    await pacer.turn()
    leaving = asyncio.create_task(pacer.turn())
    staying = asyncio.create_task(pacer.turn())
    await asyncio.sleep(0)

    leaving.cancel()
    await asyncio.wait_for(staying, timeout=1)

    assert leaving.cancelled()
    with pytest.raises(asyncio.CancelledError):
        await leaving
