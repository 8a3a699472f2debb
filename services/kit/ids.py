"""Random identifiers for events, requests and correlations.

:func:`new_id` is a version-4 UUID like :func:`uuid.uuid4`, drawn from a Mersenne Twister
of the kit's own instead of ``os.urandom``: the hot paths make one or two per request, and
under load each ``getrandom`` system call cost ~10 µs on the coupon-claim path (py-spy),
against under 1 µs for this. The generator is seeded from ``os.urandom`` when the process
starts and again in every forked child, and nothing else draws from it or seeds it (tests
that seed :mod:`random` do not touch it); 122 random bits make a collision as unlikely as
with ``uuid4``. Not for secrets (tokens, keys, nonces): those come from :mod:`secrets`.
"""

from __future__ import annotations

import os
import random
from uuid import UUID

_ids = random.Random()  # seeded from os.urandom
os.register_at_fork(after_in_child=_ids.seed)  # a child must not repeat its parent's ids


def new_id() -> UUID:
    """A random version-4 UUID."""
    return UUID(int=_ids.getrandbits(128), version=4)
