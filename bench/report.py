"""The bench's report: a table on the console, the same figures as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.inventory_reserve import Figure, Report, Target
from services.kit.logging import configure_logging
from services.kit.runtime import tune_garbage_collector
from services.kit.settings import ServiceSettings


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _ms(value: float) -> str:
    return f"{value:.2f}"


_CPU_ORDER = ("client", "server", "redis", "postgres", "other", "steal")


def _cpu(percent: dict[str, float]) -> str:
    names = sorted(percent, key=lambda n: _CPU_ORDER.index(n) if n in _CPU_ORDER else 99)
    return ", ".join(f"{name} {percent[name]:.0f}" for name in names if percent[name] >= 1)


_MAIN_PARTY = {"a": "redis", "d": "client", "e": "client"}


def _per_op(figure: Figure) -> str:
    """The CPU per operation of the process that does the work: the server for the gRPC
    figures, this process for d and e, Redis for a."""
    party = _MAIN_PARTY.get(figure.key, "server")
    value = figure.cpu_us_per_op.get(party)
    return f"{value:,.0f} {party}" if value is not None else ""


def _notes(figure: Figure) -> str:
    parts = [f"{name} {count:,}" for name, count in figure.outcomes.items()]
    parts += [f"[red]{name} {count:,}[/red]" for name, count in figure.errors.items()]
    if figure.mean_batch:
        parts.append("mean batch " + ", ".join(f"{k} {v:g}" for k, v in figure.mean_batch.items()))
    if len(figure.rounds) > 1:
        parts.append("rounds " + " / ".join(_rate(r) for r in figure.rounds))
    return "; ".join(parts)


def _target_value(target: Target) -> str:
    if target.value is None:
        return "-"
    return f"{target.value:.2f}" if not target.at_most else f"{target.value:.2f} ms"


def render(report: Report, console: Console) -> None:
    meta = report.meta
    load = meta["load_average_at_start"]
    title = (
        f"{meta.get('title', 'flash-sale reserve path')} - {meta['cpus']} CPUs,"
        f" load {load[0] if load else 0:.2f}"
        f" at start, {meta['duration_seconds']:g} s per figure after {meta['warmup_seconds']:g} s"
        f" warm-up, best of {meta['rounds']} round(s)"
    )
    table = Table(title=title, title_justify="left")
    for column in ("", "figure", "concurrency", "ops/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="right" if column.endswith(("s", "ms")) else "left")
    table.add_column("CPU µs/op", justify="right")
    table.add_column("CPU % of a core", overflow="fold")
    table.add_column("outcomes", overflow="fold")
    for key, figure in report.figures.items():
        if figure.skipped:
            table.add_row(
                key, figure.title, figure.concurrency, "skipped", "", "", "", "", figure.skipped
            )
            continue
        table.add_row(
            key,
            figure.title,
            figure.concurrency,
            _rate(figure.throughput),
            _ms(figure.p50_ms),
            _ms(figure.p99_ms),
            _per_op(figure),
            _cpu(figure.cpu_percent),
            _notes(figure),
        )
    console.print(table)
    targets = Table(title="targets", title_justify="left")
    for column in ("target", "measure", "value", "wanted", "result"):
        targets.add_column(column)
    for target in report.targets:
        wanted = f"{'<=' if target.at_most else '>='} {target.threshold:g}"
        if target.passed is None:
            result = "[yellow]n/a[/yellow] (a figure was skipped)"
        else:
            result = "[green]PASS[/green]" if target.passed else "[bold red]MISS[/bold red]"
        targets.add_row(target.name, target.expression, _target_value(target), wanted, result)
    console.print(targets)
    if report.missed:
        names = ", ".join(t.expression for t in report.missed)
        console.print(f"[bold red]MISS[/bold red]: {len(report.missed)} target(s) not met: {names}")
    elif not report.unmeasured:
        console.print("[green]every target met[/green]")
    if report.unmeasured:
        names = ", ".join(t.expression for t in report.unmeasured)
        console.print(f"[yellow]not measured[/yellow] (a figure was skipped): {names}")


def write_json(report: Report, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return path


def bench_console(width: int = 160) -> Console:
    """Set up a bench process and its console: the service code's info lines are not the
    report (warnings only), and what runs in this process (the in-process figures) runs with
    the services' garbage-collector tuning."""
    configure_logging("bench", "WARNING")
    tune_garbage_collector(ServiceSettings())
    return Console(width=None if sys.stdout.isatty() else width)
