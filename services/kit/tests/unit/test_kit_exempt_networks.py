"""The networks spared the per-address rate limit."""

from __future__ import annotations

from services.kit.ratelimit import ExemptNetworks


def test_addresses_inside_the_networks_are_covered_and_others_and_garbage_are_not() -> None:
    exempt = ExemptNetworks(["127.0.0.0/8", "10.1.0.0/16"], remembered=2)

    answers = [
        exempt.cover(a)
        for a in ("127.0.0.1", "10.1.2.3", "10.2.0.1", "not-an-ip", "127.0.0.1", "10.1.2.3")
    ]

    assert answers == [True, True, False, False, True, True]


def test_no_networks_cover_nothing() -> None:
    assert not ExemptNetworks().cover("127.0.0.1")
