"""Root pytest configuration: the kernel's stack fixtures, the integration marker for every
test under an ``integration`` or ``e2e`` folder, and the heavy ``chaos`` runs that only
``make chaos`` (``LIVECOMMERCE_CHAOS=1``) runs."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["services.kit.testing"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.parts
        if "integration" in parts or "e2e" in parts:
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("chaos") and not os.environ.get("LIVECOMMERCE_CHAOS"):
            item.add_marker(pytest.mark.skip(reason="a heavy run: make chaos runs it"))
