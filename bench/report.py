"""Tables for the terminal and bench/results/latest.md."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from bench.runner import ERROR, OK, REFUSED, Result

RESULTS = Path(__file__).resolve().parent / "results"
HEADER = (
    "| scenario | clients | requests | ok | refused | errors | actions/s | p50 ms | p95 ms | p99 ms |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def table(results: list[Result]) -> str:
    rows = [HEADER]
    for r in results:
        p50, p95, p99 = (_ms(r.percentile(p)) for p in (50, 95, 99))
        if r.average_ms is not None:
            p50 = f"avg {r.average_ms:.1f}"
        rows.append(
            f"| {r.scenario} | {r.clients} | {r.requests} | {r.outcomes[OK]} | {r.outcomes[REFUSED]} | "
            f"{r.outcomes[ERROR]} | {r.throughput:,.0f} | {p50} | {p95} | {p99} |"
        )
    return "\n".join(rows)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def machine() -> str:
    uname = platform.uname()
    return f"{uname.system} {uname.release} {uname.machine}, {os.cpu_count()} cores, Python {platform.python_version()}"


def targets_table(targets: list[tuple[str, float, float]]) -> str:
    rows = ["| target | measured | goal | met |", "|---|---:|---:|---|"]
    for name, ratio, goal in targets:
        # A negative goal reads "at most": cold starts must stay under their bound.
        met = ratio <= -goal if goal < 0 else ratio >= goal
        bound = f"<= {-goal:g}x" if goal < 0 else f">= {goal:g}x"
        rows.append(f"| {name} | {ratio:.2f}x | {bound} | {'yes' if met else 'NO'} |")
    return "\n".join(rows)


def group_commit_table(results: list[Result]) -> str:
    rows = ["| scenario | actions/s | postings per database call |", "|---|---:|---:|"]
    for r in results:
        per_call = r.postings_called / r.posting_calls if r.posting_calls else 1.0
        rows.append(f"| {r.scenario} | {r.throughput:,.0f} | {per_call:.1f} |")
    return "\n".join(rows)


def cold_table(cold: list[tuple[str, float, float]], what: str = "process start to first success, ms") -> str:
    """`cold` (bench/cold_start.py): (name, function ms, its yardstick's ms), starting
    with the empty function, a plain reference."""
    from bench.yardsticks import first_call_labels

    empty = cold[0][1]
    rows = [
        f"| function | its yardstick's first calls | {what} | its yardstick, ms"
        " | x its yardstick | ms above its yardstick | x empty function |",
        "|---|---|---:|---:|---:|---:|---:|",
        f"| empty function (a plain reference) | none | {empty:,.0f} | | | | 1.00 |",
    ]
    rows += [
        f"| {name} | {first_call_labels(name)} | {ms:,.0f} | {yard:,.0f} | {ms / yard:.2f} | {ms - yard:+,.0f}"
        f" | {ms / empty:.2f} |"
        for name, ms, yard in cold[1:]
    ]
    return "\n".join(rows)


def write(
    sections: list[tuple[str, list[Result]]],
    targets: list[tuple[str, float, float]],
    duration_s: float,
    quick: bool,
    extra: list[tuple[str, str]] | None = None,
) -> Path:
    RESULTS.mkdir(exist_ok=True)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Benchmark results{' (quick)' if quick else ''}",
        "",
        f"{when}; {machine()}; {duration_s:g} s per scenario after a 1 s warm-up; figures side by side in one run.",
        "",
        "## Targets",
        "",
        targets_table(targets),
        "",
    ]
    for title, results in sections:
        lines += [f"## {title}", "", table(results), ""]
    for title, text in extra or []:
        lines += [f"## {title}", "", text, ""]
    name = "latest-quick" if quick else "latest"
    plot(sections, RESULTS / f"{name}.png")
    lines += [f"![throughput and latency of every scenario]({name}.png)", ""]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines))
    return path


def plot(sections: list[tuple[str, list[Result]]], path: Path) -> None:
    """Throughput and p50/p95/p99 latency of every scenario, one bar each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [r for _, section in sections for r in section]
    labels = [r.scenario if len(r.scenario) <= 48 else r.scenario[:45] + "..." for r in results]
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 0.45 * len(results) + 1.6), sharey=True)
    positions = list(range(len(results)))[::-1]
    left.barh(positions, [r.throughput for r in results], color="tab:blue")
    left.set_yticks(positions, labels, fontsize=8)
    left.set_xlabel("actions/s")
    for percentile, color in ((50, "tab:green"), (95, "tab:orange"), (99, "tab:red")):
        latencies = [r.percentile(percentile) or r.average_ms or 0 for r in results]
        right.scatter(latencies, positions, color=color, label=f"p{percentile}")
    right.set_xscale("log")
    right.set_xlabel("latency, ms (pgbench: average)")
    right.legend(fontsize=8)
    figure.suptitle(f"Benchmark, {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; {machine()}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
