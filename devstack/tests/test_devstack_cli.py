"""The local-stack tooling: clear one-line errors and development tokens that verify."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from devstack import stack
from devstack.cli import main, parse
from devstack.config import StackConfig
from devstack.install import StackError
from services.kit.identity import Role, TokenVerifier
from services.kit.settings import ServiceSettings


def test_token_command_mints_a_token_the_services_accept(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["token", "--role", "host", "--role", "viewer", "--merchant", "m-7"]) == 0
    token = capsys.readouterr().out.strip()
    caller = TokenVerifier(ServiceSettings()).verify(token)
    assert caller.roles == {Role.HOST, Role.VIEWER}
    assert caller.merchant_id == "m-7"


def test_unknown_role_is_refused_with_usage_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["token", "--role", "emperor"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_taken_port_is_reported_with_the_variable_that_moves_it(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        config = StackConfig(root=tmp_path, pg_port=1, redis_port=taken, kafka_port=2)
        with pytest.raises(StackError, match=f"port {taken} for Redis.*LIVECOMMERCE_REDIS_PORT"):
            stack._check_ports_free(config)


def test_status_of_a_stack_that_never_started_is_empty(tmp_path: Path) -> None:
    assert stack.status(StackConfig(root=tmp_path)) == []
    assert stack.down(StackConfig(root=tmp_path)) is False


def test_a_crashed_process_is_reported_with_the_tail_of_its_log(tmp_path: Path) -> None:
    config = StackConfig(root=tmp_path)
    config.logs.mkdir(parents=True)
    (config.logs / "redis.log").write_text("starting\nFATAL: cannot bind\n")

    class CrashedSupervisor:
        def processes(self) -> list[stack.ProcessState]:
            return [stack.ProcessState("redis", "redis", "FATAL", 0, "Exited too quickly")]

    with pytest.raises(StackError, match="redis failed to start \\(FATAL\\)") as error:
        stack.wait_until(config, CrashedSupervisor(), ["redis"])
    assert "FATAL: cannot bind" in str(error.value)


def test_compose_file_runs_the_same_infrastructure_on_the_same_ports() -> None:

    config = StackConfig()
    compose = yaml.safe_load(config.compose_file.read_text())
    services = compose["services"]
    assert {"postgres", "redis", "kafka"} <= set(services)
    published = {name: services[name]["ports"][0] for name in ("postgres", "redis", "kafka")}
    assert published["postgres"].startswith("127.0.0.1:${LIVECOMMERCE_PG_PORT:-55432}:")
    assert published["redis"].startswith("127.0.0.1:${LIVECOMMERCE_REDIS_PORT:-56379}:")
    assert published["kafka"].startswith("127.0.0.1:${LIVECOMMERCE_KAFKA_PORT:-59092}:")
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_an_unknown_stack_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="LIVECOMMERCE_STACK must be local or compose"):
        StackConfig(root=tmp_path, backend="kubernetes")


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["sale", "--units", "0"], "--units and --buyers must be at least 1"),
        (["demo", "--units", "0"], "demo sizes"),
        (["demo", "--viewers", "5", "--buyers", "50"], "viewers at least buyers"),
    ],
)
def test_impossible_sizes_are_refused_in_one_line_before_anything_starts(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert said in err
    assert len(err.strip().splitlines()) == 1


def test_a_review_asked_for_without_its_merchant_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "room-1"])
    assert exit_info.value.code == 2
    assert "--merchant" in capsys.readouterr().err


def test_what_follows_test_goes_to_pytest_as_written_options_first_included() -> None:
    assert parse(["test", "-m", "chaos"]).pytest_args == ["-m", "chaos"]
    assert parse(["test", "tests/e2e", "-k", "storm", "-s"]).pytest_args == [
        "tests/e2e",
        "-k",
        "storm",
        "-s",
    ]
    assert parse(["test"]).pytest_args == []


@pytest.mark.usefixtures("stack")  # the local stack, up (make test)
def test_a_run_on_a_stack_already_up_stops_again_the_services_it_started() -> None:
    config = StackConfig()
    supervisor = stack.Supervisor(config)
    if not supervisor.running():
        pytest.skip("the stack's endpoints are exported but its supervisord is not this one")
    idle = sorted({p.name for p in config.services} - stack.running_services(config))
    if not idle:
        pytest.skip("every service is running already")
    name = idle[0]

    with stack.running_stack(config) as started:
        supervisor.start(name)  # what the end-to-end tests do
        during = stack.running_services(config)

    assert not started
    assert name in during
    assert name not in stack.running_services(config)
