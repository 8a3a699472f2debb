"""Random identifiers: version-4 UUIDs, distinct, and a forked child does not repeat its
parent's."""

from __future__ import annotations

import multiprocessing
import random
from multiprocessing.connection import Connection

from services.kit.ids import new_id


def test_ids_are_version_4_uuids_and_do_not_repeat() -> None:
    ids = [new_id() for _ in range(10_000)]

    assert {i.version for i in ids} == {4}
    assert len(set(ids)) == len(ids)


def test_seeding_the_random_module_does_not_make_ids_repeat() -> None:
    random.seed(7)
    first = new_id()
    random.seed(7)

    assert new_id() != first


def _send_an_id(pipe: Connection) -> None:
    pipe.send(new_id())


def test_a_forked_child_draws_other_ids_than_its_parent() -> None:
    receiving, sending = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_send_an_id, args=(sending,))
    child.start()
    from_child = receiving.recv()
    child.join(timeout=10)

    assert from_child != new_id()
