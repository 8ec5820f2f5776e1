"""Our posting path and pgledger's in the same run, in alternating rounds, each with
the Postgres CPU it cost.

A round runs every contender once: the plain-SQL transfer, ledger.commit_posting()
through pgbench and pgledger's uniform transfer (`workers` clients each), our core from
Python when the caller passes it, then the hot treasury through pgbench and pgledger's
hot account (`hot_workers` clients). Each run's Postgres CPU is the CPU seconds of the
postmaster's process tree (utime + stime, exited backends included) from /proc, read
before and after it, divided by the postings it made, warm-up included."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import click

from bench import pgbench, pgledger, processes, sizing
from bench.runner import Result
from bench.setup import BenchData
from emulators.stack import Stack

PLAIN, DIRECT, UNIFORM, CORE, TREASURY, HOT = (
    "plain-SQL transfer (pgbench)",
    "ledger.commit_posting() (pgbench)",
    "pgledger uniform transfer",
    "our core from Python",
    "our hot treasury top-ups (pgbench)",
    "pgledger hot account",
)


@dataclass
class Contender:
    label: str
    clients: int
    run: Callable[[], Result]
    results: list[Result] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # Postgres CPU ms per posting, per round

    def best(self) -> float:
        return max(r.throughput for r in self.results)

    def median(self) -> float:
        return statistics.median(r.throughput for r in self.results)


def contenders(  # noqa: PLR0913
    stack: Stack,
    data: BenchData,
    workers: int,
    hot_workers: int,
    duration_s: float,
    core: Callable[[], Result] | None,
    warmup_s: int = 2,
) -> list[Contender]:
    """The runs of a round, pgledger installed first (bench/pgledger.py)."""
    pgledger.install(stack)

    def ours(clients: int, script: tuple) -> Callable[[], Result]:
        return lambda: pgbench.transfer_baseline(stack, data, clients, duration_s, script, warmup_s)

    def theirs(clients: int, script: tuple) -> Callable[[], Result]:
        return lambda: pgledger.run(stack, script, clients, duration_s, warmup_s)

    found = [
        Contender(PLAIN, workers, ours(workers, pgbench.PLAIN)),
        Contender(DIRECT, workers, ours(workers, pgbench.DIRECT)),
        Contender(UNIFORM, workers, theirs(workers, pgledger.UNIFORM)),
        Contender(TREASURY, hot_workers, ours(hot_workers, pgbench.TREASURY)),
        Contender(HOT, hot_workers, theirs(hot_workers, pgledger.HOT)),
    ]
    if core is not None:
        found.insert(3, Contender(CORE, workers, core))
    return found


def run_rounds(stack: Stack, found: list[Contender], rounds: int, postings: Callable[[], int]) -> None:
    """`postings()` counts the ledger's postings so far: a run from Python reports no
    pgbench count, so its share is the difference around it."""
    for round_no in range(1, rounds + 1):
        for contender in found:
            click.echo(f"  running: {contender.label} (round {round_no} of {rounds}) ...", err=True)
            before, posted = processes.cpu(stack).get("postgres", 0.0), postings()
            result = contender.run()
            spent = processes.cpu(stack).get("postgres", 0.0) - before
            made = result.postings or (postings() - posted)
            contender.results.append(result)
            contender.cpu_ms.append(spent * 1000 / max(made, 1))


def _ratio(found: dict[str, Contender], top: str, bottom: str, how: Callable[[Contender], float]) -> str:
    if top not in found or bottom not in found or not how(found[bottom]):
        return "n/a"
    return f"{how(found[top]) / how(found[bottom]):.2f}x"


def report(found: list[Contender]) -> str:
    """The figures, the issue's ratios, Postgres CPU per posting and Cloud SQL sizing."""
    by = {c.label: c for c in found}
    rows = [
        "| run | clients | postings/s, best | median | Postgres CPU ms per posting (median) |",
        "|---|---:|---:|---:|---:|",
    ]
    for c in found:
        cpu = statistics.median(c.cpu_ms)
        rows.append(f"| {c.label} | {c.clients} | {c.best():,.0f} | {c.median():,.0f} | {cpu:.3f} |")
    best, median = (lambda c: c.best()), (lambda c: c.median())
    cpu_best, cpu_of = (lambda c: min(c.cpu_ms)), (lambda c: statistics.median(c.cpu_ms))
    ratios = [
        ("ledger.commit_posting() / pgledger uniform", DIRECT, UNIFORM, best, median, ">= 1.0"),
        ("our core from Python / pgledger uniform", CORE, UNIFORM, best, median, "report"),
        ("our hot treasury / pgledger hot", TREASURY, HOT, best, median, ">= 4.0"),
        ("Postgres CPU per posting: commit_posting / plain SQL", DIRECT, PLAIN, cpu_best, cpu_of, "<= 1.0"),
        ("Postgres CPU per posting: pgledger uniform / plain SQL", UNIFORM, PLAIN, cpu_best, cpu_of, "report"),
    ]
    rows += ["", "| ratio | best rounds (CPU: least) | medians | goal |", "|---|---:|---:|---|"]
    for name, top, bottom, first, second, goal in ratios:
        rows.append(f"| {name} | {_ratio(by, top, bottom, first)} | {_ratio(by, top, bottom, second)} | {goal} |")
    cpu = {c.label: statistics.median(c.cpu_ms) for c in found if c.label in (PLAIN, DIRECT, UNIFORM)}
    rows += ["", "Cloud SQL sizing from the Postgres CPU per posting above", "", sizing.table(cpu)]
    return "\n".join(rows)
