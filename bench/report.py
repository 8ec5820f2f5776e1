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
        rows.append(
            f"| {r.scenario} | {r.clients} | {r.requests} | {r.outcomes[OK]} | {r.outcomes[REFUSED]} | "
            f"{r.outcomes[ERROR]} | {r.throughput:,.0f} | {r.percentile(50):.1f} | {r.percentile(95):.1f} | "
            f"{r.percentile(99):.1f} |"
        )
    return "\n".join(rows)


def machine() -> str:
    uname = platform.uname()
    return f"{uname.system} {uname.release} {uname.machine}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write(sections: list[tuple[str, list[Result]]], clients: int, duration_s: float, quick: bool) -> Path:
    RESULTS.mkdir(exist_ok=True)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Benchmark results{' (quick)' if quick else ''}",
        "",
        f"{when}; {machine()}; {clients} clients; {duration_s:g} s per scenario after a 1 s warm-up.",
        "",
    ]
    for title, results in sections:
        lines += [f"## {title}", "", table(results), ""]
    path = RESULTS / ("latest-quick.md" if quick else "latest.md")
    path.write_text("\n".join(lines))
    return path
