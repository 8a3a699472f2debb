"""The kit's Redis client reads a pipeline's replies under one deadline, and ``pipelined``
sends commands together, against the real Redis: every reply in order, error replies as
answers, a Redis that does not answer in time a Redis TimeoutError (one that is not there a
ConnectionError), and single commands keeping their own deadline afterwards."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.kit.redis import create_redis, pipelined
from services.kit.testing import StackEndpoints, unique

SHORT_DEADLINE = 0.3
BLOCKING_SECONDS = 2


@pytest_asyncio.fixture
async def client(stack: StackEndpoints) -> AsyncIterator[Redis]:
    """A client with the default deadline."""
    redis = create_redis(stack.redis_url)
    yield redis
    await redis.aclose()


@pytest_asyncio.fixture
async def scratch(client: Redis) -> AsyncIterator[tuple[str, str]]:
    """Two keys of the test's own, deleted afterwards."""
    keys = (unique("text"), unique("number"))
    yield keys
    await client.delete(*keys)


@pytest_asyncio.fixture
async def impatient(stack: StackEndpoints) -> AsyncIterator[Redis]:
    """A client that waits at most SHORT_DEADLINE seconds for a reply."""
    redis = create_redis(stack.redis_url, max_connections=4, socket_timeout=SHORT_DEADLINE)
    yield redis
    await redis.aclose()


async def test_a_pipeline_answers_every_command_in_order_with_error_replies_as_answers(
    client: Redis, scratch: tuple[str, str]
) -> None:
    text, number = scratch
    pipe = client.pipeline(transaction=False)
    pipe.set(text, "not a number")
    pipe.incr(number)
    pipe.incr(text)
    pipe.incr(number)
    answers = await pipe.execute(raise_on_error=False)

    assert answers[:2] == [True, 1]
    assert isinstance(answers[2], ResponseError)
    assert answers[3] == 2


async def test_a_pipeline_redis_does_not_answer_in_time_is_a_redis_timeout_and_the_client_recovers(
    impatient: Redis,
) -> None:
    pipe = impatient.pipeline(transaction=False)
    pipe.ping()
    pipe.blpop([unique("pipe-empty")], timeout=BLOCKING_SECONDS)  # answers after 2 s

    with pytest.raises(RedisTimeoutError, match="pipeline"):
        await pipe.execute()

    assert await impatient.ping() is True  # the interrupted connection was not reused


async def test_a_single_command_after_a_pipeline_keeps_its_own_deadline(
    impatient: Redis,
) -> None:
    pipe = impatient.pipeline(transaction=False)
    pipe.ping()
    assert await pipe.execute() == [True]

    with pytest.raises(RedisTimeoutError):
        await impatient.blpop([unique("pipe-empty")], timeout=BLOCKING_SECONDS)


async def test_commands_sent_together_answer_in_order_with_error_replies_in_their_place(
    client: Redis, scratch: tuple[str, str]
) -> None:
    text, number = scratch
    answers = await pipelined(
        client,
        [
            ("SET", text, "not a number"),
            ("INCR", number),
            ("INCR", text),
            ("EVALSHA", "0" * 40, 0),
            ("EVAL", "return {KEYS[1], ARGV[1], 7}", 1, number, "x"),
            ("INCR", number),
        ],
    )

    assert answers[:2] == ["OK", 1]
    assert isinstance(answers[2], ResponseError)
    assert isinstance(answers[3], NoScriptError)  # what evalsha_many loads the script on
    assert answers[4:] == [[number, "x", 7], 2]


async def test_commands_sent_together_that_redis_does_not_answer_in_time_are_a_redis_timeout(
    impatient: Redis,
) -> None:
    with pytest.raises(RedisTimeoutError, match="pipeline"):
        await pipelined(impatient, [("PING",), ("BLPOP", unique("raw-empty"), BLOCKING_SECONDS)])

    assert await pipelined(impatient, [("PING",), ("PING",)]) == ["PONG", "PONG"]
    assert await impatient.ping() is True


async def test_commands_sent_together_to_a_redis_that_is_not_there_are_a_connection_error() -> None:
    with socket.socket() as placeholder:  # a port nothing listens on
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    redis = create_redis(f"redis://127.0.0.1:{port}/0", socket_timeout=SHORT_DEADLINE)
    try:
        with pytest.raises(RedisConnectionError):
            await pipelined(redis, [("PING",), ("PING",)])
    finally:
        await redis.aclose()
