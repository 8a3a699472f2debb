"""What caused the work in progress: correlation, causation, trace context and actor.

HTTP and gRPC entry points and the consumer runner set these; the event store stamps
them on every event it appends, so the chain from a tap on "buy" to the last reaction
in another service can be followed without any handler passing ids around, and every
event records who asked for it (the audit trail): the verified caller's subject, bound by
the HTTP caller dependency and the gRPC server interceptor once the token is verified.
Work no caller asked for (timers, consumers) has an empty actor; its causation id leads
to the event, and so to the actor, that caused it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace

from services.kit.ids import new_id


@dataclass(frozen=True)
class MessageContext:
    correlation_id: str
    causation_id: str
    trace_context: Mapping[str, str] = field(default_factory=dict)
    actor: str = ""
    """The verified subject who asked for the work (``u-1``, ``service:order``); empty for
    work of the system itself."""


_current: ContextVar[MessageContext | None] = ContextVar("message_context", default=None)


def current_context() -> MessageContext:
    """The context of the work in progress, or a fresh one for work with no cause."""
    found = _current.get()
    if found is not None:
        return found
    fresh = str(new_id())
    return MessageContext(correlation_id=fresh, causation_id=fresh)


@contextmanager
def message_context(context: MessageContext) -> Iterator[MessageContext]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def bind_actor(actor: str) -> None:
    """Record ``actor`` in the context of the work in progress (inside a
    :func:`message_context`, which undoes it when the work ends)."""
    found = _current.get()
    if found is not None and found.actor != actor:
        _current.set(replace(found, actor=actor))
