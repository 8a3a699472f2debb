"""The local stack under supervisord: Postgres, Redis and the Kafka-protocol broker, and
the services' processes, all in ``.stack/`` on project ports.

supervisord (a well-kept process manager) starts, restarts and stops the processes; this
module writes its configuration, prepares the Postgres cluster, waits until each component
really answers, and reports a component that fails with the tail of its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import redis
from supervisor.xmlrpc import SupervisorTransport

from devstack.config import SERVICE_DATABASES, TEST_DATABASE, ServiceProcess, StackConfig
from devstack.install import StackError, card_font, postgres_bin, redis_server, tansu_binary

INFRA = ("postgres", "redis", "kafka")
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class ProcessState:
    name: str
    group: str
    state: str
    pid: int
    description: str


def _run_as_postgres() -> bool:
    return os.geteuid() == 0


def _postgres_home(config: StackConfig) -> Path:
    """Postgres refuses to run as root, so as root it runs as the 'postgres' user, which
    must reach its data directory. If the project folder is not reachable by that user
    (a clone under /root), the data lives in /var/lib/livecommerce-stack/<hash> instead,
    linked from .stack/postgres."""
    link = config.state / "postgres"
    if not _run_as_postgres():
        link.mkdir(parents=True, exist_ok=True)
        return link
    if link.is_symlink() or link.exists():
        return link.resolve()
    link.mkdir(parents=True)
    shutil.chown(link, "postgres", "postgres")
    reachable = (
        subprocess.run(
            ["runuser", "-u", "postgres", "--", "test", "-w", str(link)], check=False
        ).returncode
        == 0
    )
    if reachable:
        return link
    link.rmdir()
    digest = hashlib.sha256(str(config.root).encode()).hexdigest()[:12]
    home = Path("/var/lib/livecommerce-stack") / digest
    home.mkdir(parents=True, exist_ok=True)
    shutil.chown(home, "postgres", "postgres")
    link.symlink_to(home)
    return home


def _init_postgres(config: StackConfig, bindir: Path) -> Path:
    home = _postgres_home(config)
    data = home / "data"
    if (data / "PG_VERSION").exists():
        return data
    command = [
        str(bindir / "initdb"),
        "-D",
        str(data),
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-locale",
    ]
    if _run_as_postgres():
        command = ["runuser", "-u", "postgres", "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"initdb failed: {result.stderr.strip().splitlines()[-1:]}")
    return data


def _program(
    name: str,
    command: str,
    config: StackConfig,
    group_env: dict[str, str] | None = None,
    user: str | None = None,
    autostart: bool = True,
    stopsignal: str = "TERM",
    directory: Path | None = None,
) -> str:
    lines = [
        f"[program:{name}]",
        f"command={command}",
        f"directory={directory or config.root}",
        f"autostart={'true' if autostart else 'false'}",
        "autorestart=unexpected",
        "startsecs=1",
        "startretries=2",
        f"stopsignal={stopsignal}",
        "stopwaitsecs=30",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={config.logs / (name + '.log')}",
        "stdout_logfile_maxbytes=20MB",
        "stdout_logfile_backups=1",
    ]
    if user:
        lines.append(f"user={user}")
    if group_env:
        env = ",".join(f'{k}="{v}"' for k, v in sorted(group_env.items()))
        lines.append(f"environment={env}")
    return "\n".join(lines) + "\n"


def _infra_programs(config: StackConfig, pg_data: Path) -> list[str]:
    bindir = postgres_bin()
    redis_dir = config.state / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    postgres = (
        f"{bindir / 'postgres'} -D {pg_data} -p {config.pg_port} -h 127.0.0.1"
        " -c unix_socket_directories='' -c max_connections=400 -c shared_buffers=256MB"
        " -c listen_addresses=127.0.0.1 -c log_min_messages=warning"
    )
    redis_cmd = (
        f"{redis_server()} --port {config.redis_port} --bind 127.0.0.1 --save ''"
        f" --appendonly no --dir {redis_dir} --protected-mode no --loglevel warning"
    )
    kafka = (
        f"{tansu_binary()} broker --listener-url tcp://127.0.0.1:{config.kafka_port}"
        f" --advertised-listener-url tcp://127.0.0.1:{config.kafka_port}"
    )
    return [
        _program(
            "postgres",
            postgres,
            config,
            user="postgres" if _run_as_postgres() else None,
            stopsignal="INT",
            directory=pg_data.parent,
        ),
        _program("redis", redis_cmd, config),
        _program("kafka", kafka, config, group_env={"RUST_LOG": "warn"}),
    ]


def write_config(config: StackConfig, pg_data: Path | None) -> None:
    """supervisord's configuration: the infrastructure (local backend) and the services."""
    parts = [
        "[unix_http_server]",
        f"file={config.supervisor_socket}",
        "chmod=0700",
        "",
        "[supervisord]",
        f"logfile={config.logs / 'supervisord.log'}",
        f"pidfile={config.supervisor_pidfile}",
        f"directory={config.root}",
        "user=root" if os.geteuid() == 0 else "",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{config.supervisor_socket}",
        "",
    ]
    if pg_data is not None:
        parts += _infra_programs(config, pg_data)
    for process in config.services:
        env = {**config.service_env(process.service), **process.env, "PYTHONUNBUFFERED": "1"}
        parts.append(
            _program(
                process.name, _service_command(process), config, group_env=env, autostart=False
            )
        )
    config.supervisor_conf.write_text("\n".join(parts))


def _service_command(process: ServiceProcess) -> str:
    return f"{sys.executable} -m services.{process.service} {process.role}"


class ProcessSource(Protocol):
    def processes(self) -> list[ProcessState]: ...


class Supervisor:
    """The running supervisord, through its XML-RPC interface on the unix socket."""

    def __init__(self, config: StackConfig) -> None:
        self._config = config
        transport = SupervisorTransport(None, None, f"unix://{config.supervisor_socket}")
        self._proxy: Any = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def running(self) -> bool:
        if not self._config.supervisor_socket.exists():
            return False
        try:
            state: str = self._proxy.supervisor.getState()["statename"]
        except (OSError, xmlrpc.client.Fault):
            return False
        return state == "RUNNING"

    def processes(self) -> list[ProcessState]:
        return [
            ProcessState(p["name"], p["group"], p["statename"], p["pid"], p["description"])
            for p in self._proxy.supervisor.getAllProcessInfo()
        ]

    def start(self, name: str) -> None:
        with contextlib.suppress(xmlrpc.client.Fault):  # ALREADY_STARTED
            self._proxy.supervisor.startProcess(name, False)

    def stop(self, name: str) -> None:
        with contextlib.suppress(xmlrpc.client.Fault):  # NOT_RUNNING
            self._proxy.supervisor.stopProcess(name, True)

    def reload(self) -> None:
        """Pick up a rewritten configuration: add new programs, drop removed ones."""
        added, changed, removed = self._proxy.supervisor.reloadConfig()[0]
        for name in [*removed, *changed]:
            with contextlib.suppress(xmlrpc.client.Fault):
                self._proxy.supervisor.stopProcessGroup(name)
            self._proxy.supervisor.removeProcessGroup(name)
        for name in [*changed, *added]:
            self._proxy.supervisor.addProcessGroup(name)

    def shutdown(self) -> None:
        self._proxy.supervisor.shutdown()


def log_tail(config: StackConfig, name: str, lines: int = 20) -> str:
    path = config.logs / f"{name}.log"
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _check_ports_free(config: StackConfig) -> None:
    for name, port in (
        ("Postgres", config.pg_port),
        ("Redis", config.redis_port),
        ("Kafka", config.kafka_port),
    ):
        if _port_open(port):
            variable = {"Postgres": "PG", "Redis": "REDIS", "Kafka": "KAFKA"}[name]
            raise StackError(
                f"port {port} for {name} is taken by another process; stop it or set "
                f"LIVECOMMERCE_{variable}_PORT"
            )


async def _postgres_ready(config: StackConfig) -> bool:
    try:
        conn = await asyncpg.connect(config.postgres_dsn("postgres"), timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


def _redis_ready(config: StackConfig) -> bool:
    try:
        return bool(redis.Redis.from_url(config.redis_url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _ready(config: StackConfig, name: str) -> bool:
    if name == "postgres":
        return asyncio.run(_postgres_ready(config))
    if name == "redis":
        return _redis_ready(config)
    if name == "kafka":
        return _port_open(config.kafka_port)
    return True


def wait_until(
    config: StackConfig,
    supervisor: ProcessSource,
    names: list[str],
    ready: Any = _ready,
    timeout: float = START_TIMEOUT,
) -> None:
    """Wait until each named process is RUNNING and answers; fail fast on a crash."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        states = {p.name: p for p in supervisor.processes()}
        for name in list(pending):
            state = states[name].state
            if state in ("FATAL", "EXITED", "BACKOFF", "STOPPED"):
                raise StackError(
                    f"{name} failed to start ({state}); last lines of "
                    f"{config.logs / (name + '.log')}:\n{log_tail(config, name)}"
                )
            if state == "RUNNING" and ready(config, name):
                pending.remove(name)
        if pending and time.monotonic() > deadline:
            raise StackError(f"timed out waiting for {', '.join(pending)}; see {config.logs}")
        if pending:
            time.sleep(0.2)


async def _create_databases(config: StackConfig) -> None:
    conn = await asyncpg.connect(config.postgres_dsn("postgres"))
    try:
        existing = {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
        for name in (*SERVICE_DATABASES, TEST_DATABASE):
            if name not in existing:
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def up(config: StackConfig) -> bool:
    """Start the infrastructure; True if this call started it, False if it was running."""
    config.logs.mkdir(parents=True, exist_ok=True)
    local = config.backend == "local"
    pg_data = _pg_data(config)
    supervisor = Supervisor(config)
    started = False
    backend_file = config.state / "backend"
    if supervisor.running():
        running = backend_file.read_text().strip() if backend_file.exists() else "local"
        if running != config.backend:
            raise StackError(
                f"a {running} stack is running; stop it with `make down` before starting "
                f"a {config.backend} one"
            )
        _refresh(config, supervisor, pg_data)
        for name in INFRA if local else ():
            supervisor.start(name)
    else:
        if local:
            _check_ports_free(config)
        else:
            _compose(config, "up", "-d", "--wait", *INFRA)
        write_config(config, pg_data)
        backend_file.write_text(config.backend)
        config.supervisor_socket.unlink(missing_ok=True)
        result = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(config.supervisor_conf)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"supervisord did not start: {result.stderr.strip()}")
        _wait_for_supervisor(supervisor)
        started = True
    if local:
        wait_until(config, supervisor, list(INFRA))
    asyncio.run(_create_databases(config))
    return started


def _pg_data(config: StackConfig) -> Path | None:
    """The local Postgres data directory (initialised if new); None on the compose backend."""
    return _init_postgres(config, postgres_bin()) if config.backend == "local" else None


def _refresh(config: StackConfig, supervisor: Supervisor, pg_data: Path | None) -> None:
    """Rewrite supervisord's configuration and have the running supervisord pick it up."""
    write_config(config, pg_data)
    supervisor.reload()


def _compose(config: StackConfig, *args: str) -> None:
    """docker compose on deploy/compose.yaml (the compose backend only)."""
    if not shutil.which("docker"):
        raise StackError("LIVECOMMERCE_STACK=compose needs docker; unset it to run locally")
    command = ["docker", "compose", "-f", str(config.compose_file), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise StackError(f"docker compose {args[0]} failed: {last}")


def _wait_for_supervisor(supervisor: Supervisor) -> None:
    deadline = time.monotonic() + 15
    while not supervisor.running():
        if time.monotonic() > deadline:
            raise StackError("supervisord did not answer on its socket")
        time.sleep(0.1)


def start_services(config: StackConfig, *, restart: bool = False) -> None:
    """Start every service process; with ``restart`` running ones are restarted first, so
    that they run the code as it is now."""
    card_font()  # referral draws its invitation cards with it
    supervisor = Supervisor(config)
    wanted = [p.name for p in config.services]
    known = {p.name for p in supervisor.processes()}
    if not set(wanted) <= known:  # a supervisord started before a service was added
        _refresh(config, supervisor, _pg_data(config))
    for name in wanted:
        if restart:
            supervisor.stop(name)
        supervisor.start(name)
    wait_until(config, supervisor, wanted, ready=lambda *_: True)


def stop_services(config: StackConfig) -> None:
    supervisor = Supervisor(config)
    if supervisor.running():
        for process in config.services:
            supervisor.stop(process.name)


def down(config: StackConfig) -> bool:
    """Stop everything; True if something was running."""
    supervisor = Supervisor(config)
    if not supervisor.running():
        return False
    pid = _read_pid(config)
    supervisor.shutdown()
    deadline = time.monotonic() + 60
    while pid and _alive(pid):
        if time.monotonic() > deadline:
            raise StackError(f"supervisord (pid {pid}) did not stop; see {config.logs}")
        time.sleep(0.1)
    if config.backend == "compose":
        _compose(config, "down", "--volumes")
    return True


def _read_pid(config: StackConfig) -> int | None:
    try:
        return int(config.supervisor_pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def running_stack(config: StackConfig) -> Iterator[bool]:
    """The stack up for the duration, and afterwards as it was: stopped if this started it;
    else the services that were not running before stopped again (the end-to-end tests
    start them, and a developer's stack left with every service running measured them in
    the next benchmark)."""
    started = up(config)
    running = set() if started else running_services(config)
    try:
        yield started
    finally:
        if started:
            down(config)
        else:
            supervisor = Supervisor(config)
            if supervisor.running():
                for name in running_services(config) - running:
                    supervisor.stop(name)


def running_services(config: StackConfig) -> set[str]:
    """The names of the service processes supervisord is running (not the infrastructure)."""
    services = {p.name for p in config.services}
    return {
        p.name for p in status(config) if p.name in services and p.state in ("RUNNING", "STARTING")
    }


def status(config: StackConfig) -> list[ProcessState]:
    supervisor = Supervisor(config)
    return supervisor.processes() if supervisor.running() else []
