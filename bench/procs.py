"""Processes the bench starts and watches: free ports, servers that are always stopped,
and the CPU time a process (or Redis, or the whole Postgres cluster) spends in a window."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY, Metric
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def free_port() -> int:
    """A port nothing listens on now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: split after its closing parenthesis
    return raw[raw.rindex(")") + 2 :].split()


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of one process so far (None off Linux or when gone)."""
    fields = _stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def postmaster_of(backend: int) -> int | None:
    """The postmaster of a local Postgres backend; None when the backend is not a local
    process (Postgres in a container or on another host)."""
    try:
        if Path(f"/proc/{backend}/comm").read_text().strip() != "postgres":
            return None
    except OSError:
        return None
    fields = _stat(backend)
    return int(fields[1]) if fields is not None else None


def tree_cpu(root: int) -> dict[int, float] | None:
    """CPU seconds of ``root`` and of each of its direct children (a postmaster and its
    backends), by pid: backends come and go, so a window adds up per pid."""
    own = process_cpu(root)
    if own is None:
        return None
    found = {root: own}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(root):
            fields = _stat(int(entry.name))
            if fields is not None and fields[1] == str(root):
                found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / _TICK
    return found


def machine_cpu() -> float | None:
    """CPU seconds every process of the machine has used so far (all cores, from
    /proc/stat: user, nice, system, irq, softirq), or None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    return (user + nice + system + irq + softirq) / _TICK


def steal_cpu() -> float | None:
    """CPU seconds the hypervisor gave to someone else while this machine wanted them."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    return int(fields[8]) / _TICK if len(fields) > 8 else None


async def redis_cpu(redis: Redis) -> float | None:
    """The Redis server's own CPU seconds so far (INFO cpu)."""
    try:
        info: Mapping[str, Any] = await redis.info("cpu")
    except Exception:
        return None
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


Reading = float | Mapping[int, float] | None
"""CPU seconds so far: of one source, or of several processes by pid; None if unknown."""


def _used(before: Reading, after: Reading) -> float | None:
    if before is None or after is None:
        return None
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        # a process that started in the window used all its time in it; one that ended
        # in it is not counted (its last moments are lost)
        return sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in after.items())
    if isinstance(before, float | int) and isinstance(after, float | int):
        return max(0.0, after - before)
    return None


class CpuWindow:
    """CPU used per source between :meth:`start` and :meth:`stop`, as % of one core, and
    ``other``: what the rest of the machine used meanwhile (other tenants, other tests; a
    noisy figure shows here), and ``steal`` when the hypervisor took time away."""

    def __init__(
        self,
        sources: Mapping[str, Callable[[], Reading]] | None = None,
        redis: Redis | None = None,
    ) -> None:
        self._sources = dict(sources or {})
        self._redis = redis
        self._start: dict[str, Reading] = {}
        self._began = 0.0
        self.percent: dict[str, float] = {}

    def add(self, name: str, read: Callable[[], Reading]) -> None:
        self._sources[name] = read

    async def _read(self) -> dict[str, Reading]:
        values = {name: read() for name, read in self._sources.items()}
        if self._redis is not None:
            values["redis"] = await redis_cpu(self._redis)
        values["machine"] = machine_cpu()
        values["steal"] = steal_cpu()
        return values

    async def start(self) -> None:
        self._start = await self._read()
        self._began = time.perf_counter()

    async def stop(self) -> dict[str, float]:
        end = await self._read()
        elapsed = time.perf_counter() - self._began
        for name, before in self._start.items():
            used = _used(before, end.get(name))
            if used is not None and elapsed > 0:
                self.percent[name] = round(100 * used / elapsed, 1)
        return self.percent

    def finish(self, **more: float) -> dict[str, float]:
        """Add what was measured elsewhere (% of a core), and turn the machine's total into
        ``other``: what no process of the bench used."""
        self.percent.update(more)
        machine = self.percent.pop("machine", None)
        if machine is not None:
            ours = sum(v for k, v in self.percent.items() if k not in ("steal", "other"))
            self.percent["other"] = round(max(0.0, machine - ours), 1)
        if self.percent.get("steal", 0.0) < 1:
            self.percent.pop("steal", None)
        return self.percent


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def wait_serving(target: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until the server's health service says SERVING; fail fast if the process died."""
    deadline = time.monotonic() + 60
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"server {process.args!r} exited with {process.returncode}:\n{_tail(log)}"
                )
            with suppress(grpc.aio.AioRpcError, asyncio.TimeoutError):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"server {process.args!r} not serving after 60 s:\n{_tail(log)}")
            await asyncio.sleep(0.2)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


@asynccontextmanager
async def grpc_server(
    argv: Sequence[str], *, port: int, env: Mapping[str, str], cwd: Path, log: Path
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """A server process, serving on ``127.0.0.1:port`` for the duration, always stopped."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - started once, never waited on here
            list(argv), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            await wait_serving(f"127.0.0.1:{port}", process, log)
            yield process
        finally:
            stop_process(process)


BatchTotals = dict[str, tuple[float, float]]
"""Per micro-batcher (``livecommerce_batch_size{batcher=…}``): items and batches so far."""

BATCH_METRIC = "livecommerce_batch_size"


def _batch_totals(families: Iterable[Metric]) -> BatchTotals:
    found: dict[str, list[float]] = {}
    for family in families:
        if family.name != BATCH_METRIC:
            continue
        for sample in family.samples:
            totals = found.setdefault(sample.labels.get("batcher", ""), [0.0, 0.0])
            if sample.name.endswith("_sum"):
                totals[0] = sample.value
            elif sample.name.endswith("_count"):
                totals[1] = sample.value
    return {batcher: (items, batches) for batcher, (items, batches) in found.items()}


def local_batch_sizes() -> BatchTotals:
    """This process's micro-batches so far."""
    return _batch_totals(REGISTRY.collect())


async def batch_sizes(metrics_url: str) -> BatchTotals:
    """A server's micro-batches so far, from its /metrics (empty if it cannot be read)."""

    def scrape() -> str:
        with urllib.request.urlopen(metrics_url, timeout=5) as answer:  # noqa: S310 - bench's own server
            text: str = answer.read().decode()
            return text

    try:
        text = await asyncio.to_thread(scrape)
    except OSError:
        return {}
    return _batch_totals(text_string_to_metric_families(text))


def mean_batches(before: BatchTotals, after: BatchTotals) -> dict[str, float]:
    """The mean batch of each batcher between two readings, by the last part of its name
    (``promotion.claim.decide`` -> ``decide``)."""
    means: dict[str, float] = {}
    for batcher, (items, batches) in sorted(after.items()):
        items_before, batches_before = before.get(batcher, (0.0, 0.0))
        if batches > batches_before:
            mean = (items - items_before) / (batches - batches_before)
            means[batcher.rsplit(".", 1)[-1]] = round(mean, 1)
    return means
