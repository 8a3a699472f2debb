"""Root pytest configuration: the kernel's stack fixtures, and the integration marker for
every test under an ``integration`` or ``e2e`` folder."""

from __future__ import annotations

import pytest

pytest_plugins = ["services.kit.testing"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.parts
        if "integration" in parts or "e2e" in parts:
            item.add_marker(pytest.mark.integration)
