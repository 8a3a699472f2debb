"""What caused the work in progress: correlation, causation and trace context.

HTTP and gRPC entry points and the consumer runner set these; the event store stamps
them on every event it appends, so the chain from a tap on "buy" to the last reaction
in another service can be followed without any handler passing ids around.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from uuid import uuid4


@dataclass(frozen=True)
class MessageContext:
    correlation_id: str
    causation_id: str
    trace_context: Mapping[str, str] = field(default_factory=dict)


_current: ContextVar[MessageContext | None] = ContextVar("message_context", default=None)


def current_context() -> MessageContext:
    """The context of the work in progress, or a fresh one for work with no cause."""
    found = _current.get()
    if found is not None:
        return found
    fresh = str(uuid4())
    return MessageContext(correlation_id=fresh, causation_id=fresh)


@contextmanager
def message_context(context: MessageContext) -> Iterator[MessageContext]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
