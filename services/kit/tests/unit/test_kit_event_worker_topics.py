"""The topics a worker's event plumbing makes sure of, and the subscriptions it refuses."""

from __future__ import annotations

import pytest

from services.kit.consumer import ConsumedEvent
from services.kit.db import Connection
from services.kit.event_worker import Subscription, topics_of


async def ignore(event: ConsumedEvent, conn: Connection) -> None:
    return None


def subscription(group: str, topics: list[str], loop: str) -> Subscription:
    return Subscription(group, topics, {"test.Happened": ignore}, loop=loop)


def test_a_worker_needs_its_events_topic_the_topics_it_reads_and_each_groups_dead_letters() -> None:
    topics = topics_of(
        "room.events",
        [subscription("room-feed", ["promotion.events", "inventory.events"], "feed")],
    )

    assert topics == ["room.events", "promotion.events", "inventory.events", "room-feed.dlq"]


def test_a_topic_read_by_the_relay_and_by_two_groups_is_asked_for_once() -> None:
    topics = topics_of(
        "inventory.events",
        [
            subscription("inventory-stock-levels", ["inventory.events"], "stock-levels"),
            subscription("inventory-orders", ["order.events"], "orders"),
            subscription("inventory-audit", ["order.events", "inventory.events"], "audit"),
        ],
    )

    assert topics == [
        "inventory.events",
        "inventory-stock-levels.dlq",
        "order.events",
        "inventory-orders.dlq",
        "inventory-audit.dlq",
    ]


def test_a_worker_without_subscriptions_needs_only_its_events_topic() -> None:
    assert topics_of("order.events", []) == ["order.events"]


def test_the_dead_letter_topic_is_named_after_the_group_not_the_loop() -> None:
    assert subscription(
        "order-group-buys", ["promotion.events"], "group-buys"
    ).dead_letter_topic == ("order-group-buys.dlq")


@pytest.mark.parametrize(
    ("subscriptions", "refusal"),
    [
        (
            [subscription("same", ["a.events"], "a"), subscription("same", ["b.events"], "b")],
            "share a consumer group",
        ),
        (
            [subscription("one", ["a.events"], "same"), subscription("two", ["b.events"], "same")],
            "loops share a name",
        ),
        ([subscription("one", ["a.events"], "relay")], "loops share a name"),
    ],
    ids=["shared group", "shared loop name", "loop named like the relay"],
)
def test_refuses_subscriptions_that_would_replace_another_loop_or_share_a_group(
    subscriptions: list[Subscription], refusal: str
) -> None:
    with pytest.raises(ValueError, match=refusal):
        topics_of("svc.events", subscriptions)
