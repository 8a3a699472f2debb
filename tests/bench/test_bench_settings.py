"""``python -m bench inventory --server-setting``: the served process gets the settings asked
for and no stray ``INVENTORY_*`` variable of the caller's shell; a malformed one is refused
with one line. Pure logic: nothing is started."""

from __future__ import annotations

import pytest

from bench.__main__ import main
from bench.inventory_reserve import Stage, _server_env
from services.inventory.settings import InventorySettings


def _stage() -> Stage:
    dsn = "postgresql://postgres@127.0.0.1:1/bench_x"
    return Stage(
        merchant="bench-x",
        database="bench_x",
        dsn=dsn,
        settings=InventorySettings(postgres_dsn=dsn, redis_url="redis://127.0.0.1:2/0"),
    )


def test_the_served_process_gets_the_settings_asked_for_and_not_the_shells_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("INVENTORY_RESERVE_MAX_BATCH", "7")
    monkeypatch.setenv("INVENTORY_GRPC_PORT", "1")

    env = _server_env(
        _stage(),
        port=5000,
        metrics_port=5001,
        settings={"INVENTORY_RESERVE_DECIDE_INTERVAL_MS": "6", "INVENTORY_GRPC_PORT": "9"},
    )

    assert env["INVENTORY_RESERVE_DECIDE_INTERVAL_MS"] == "6"
    assert "INVENTORY_RESERVE_MAX_BATCH" not in env
    assert env["INVENTORY_GRPC_PORT"] == "5000"  # the bench's own wiring is not overridden
    assert env["INVENTORY_POSTGRES_DSN"].endswith("/bench_x")


@pytest.mark.parametrize("setting", ["RESERVE_MAX_BATCH=8", "INVENTORY_RESERVE_MAX_BATCH"])
def test_a_server_setting_that_is_not_an_inventory_name_and_value_is_refused_in_one_line(
    setting: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["inventory", "--server-setting", setting])

    assert exited.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        f"python -m bench: error: --server-setting wants INVENTORY_NAME=VALUE, got {setting!r}"
    )
