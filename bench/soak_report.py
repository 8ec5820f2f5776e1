"""The soak's report (bench/soak.py): latency percentiles over all requests and per
action, errors by status, throughput and latency over time, memory, events and the
money invariants; soak.md and soak.png."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench import arrivals
from bench.arrivals import Step
from bench.events import table as events_table
from bench.report import machine

LATENCY = "p50 ms | p95 ms | p99 ms | p99.9 ms | max ms"
WINDOW_S = 10  # throughput over time, in windows of this many seconds


@dataclass
class Run:
    command: str
    actions: int
    duration_s: float
    step: Step
    memory: list[tuple[float, dict[str, float]]]  # (seconds since start, PSS MiB by process)
    events: tuple[int, int, list[float | None]]  # bench.events.summary
    violations: dict[str, list[list[object]]]
    resends: int


def _errors(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{kind} × {n:,}" for kind, n in sorted(outcomes.items())) or "none"


def summary_table(step: Step) -> str:
    failed = step.counted - step.answered
    return "\n".join(
        [
            f"| requests | ok | refused | failed | achieved /s | {LATENCY} |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {step.counted:,} | {step.outcomes['ok']:,} | {step.outcomes['refused']:,} | {failed:,}"
            f" | {step.achieved:,.1f} | " + " | ".join(arrivals.ms_cells(step.histogram)) + " |",
        ]
    )


def actions_table(step: Step) -> str:
    """One row per action; a request never sent (its time ran out in the queue) has no action."""
    rows = [f"| action | requests | ok | refused | failed | {LATENCY} |", "|---|---:|---:|---:|---:|" + "---:|" * 5]
    for kind in sorted({kind for kind, _ in step.kind_outcomes}):
        counts = {outcome: n for (k, outcome), n in step.kind_outcomes.items() if k == kind}
        failed = sum(n for outcome, n in counts.items() if outcome not in arrivals.ANSWERED)
        cells = arrivals.ms_cells(step.by_kind.get(kind, arrivals.histogram()))
        rows.append(
            f"| {kind} | {sum(counts.values()):,} | {counts.get('ok', 0):,} | {counts.get('refused', 0):,}"
            f" | {failed:,} | " + " | ".join(cells) + " |"
        )
    return "\n".join(rows)


def _throughput(step: Step) -> list[float]:
    """Answers per second in whole windows of WINDOW_S seconds (the last second, cut
    short by the last answer, is in none)."""
    last = max(step.per_second, default=0)
    return [
        sum(step.per_second.get(s, 0) for s in range(start, start + WINDOW_S)) / WINDOW_S
        for start in range(0, last - WINDOW_S + 1, WINDOW_S)
    ]


def over_time(step: Step) -> str:
    minutes = sorted(step.per_minute)
    p99s = [arrivals.ms(step.per_minute[m], 99) for m in minutes]
    windows = _throughput(step)
    if not p99s:
        return "No request was answered."
    worst = max(range(len(p99s)), key=p99s.__getitem__)
    throughput = f"lowest {min(windows):,.1f}/s, highest {max(windows):,.1f}/s" if windows else "none (a shorter run)"
    return (
        f"p99 per minute of intended send time: median {statistics.median(p99s):,.1f} ms over {len(p99s)}"
        f" minutes, worst {p99s[worst]:,.1f} ms (minute {minutes[worst] + 1}). Answers per whole"
        f" {WINDOW_S} s window: {throughput} (offered {step.rate:g}/s)."
    )


def markdown(run: Run) -> str:
    step, (start, end) = run.step, (run.memory[0][1], run.memory[-1][1])
    uncounted = run.actions - step.counted
    lines = [
        "# Soak",
        "",
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; {machine()}.",
        "",
        f"`{run.command}`: {run.actions:,} mixed actions (top-up 20 %, usage 60 %, transfer 15 %, void 5 %)"
        f" sent open loop at a fixed {step.rate:g} requests/s, in {run.duration_s / 60:.1f} min. Latency runs"
        " from each request's intended send time to its answer, every request in one HDR histogram;"
        " refusals (409, 422) are answers; errors and timeouts are counted apart.",
        "",
        summary_table(step),
        "",
        f"Errors by status: {_errors(step.errors)}. Every request counted once:"
        f" {'yes' if not uncounted else f'NO ({uncounted:,} missing)'}.",
        "",
        actions_table(step),
        "",
        over_time(step),
        "",
        f"Requests sent again with the same Idempotency-Key after the server closed an idle keep-alive"
        f" connection before answering: {run.resends:,}.",
        "",
        f"Money invariants after the run: {'intact' if not run.violations else run.violations}.",
        "",
        "Events (every posting's outbox row, to its Pub/Sub acknowledgement):",
        "",
        events_table(*run.events),
        "",
        "![throughput, p99 per minute and memory over time](soak.png)",
        "",
        "The Firestore emulator's growth is the idempotency records themselves: it holds every",
        "document in memory and does not enforce the TTL that deletes them in Google Cloud.",
        "",
        "| process | PSS at start, MiB | PSS at end, MiB |",
        "|---|---:|---:|",
        *[f"| {name} | {start[name]:.0f} | {end.get(name, 0.0):.0f} |" for name in start],
    ]
    return "\n".join(lines) + "\n"


def write(run: Run, text: str, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "soak.md").write_text(text)
    plot(run, directory / "soak.png")


def plot(run: Run, path: Path) -> None:
    """Answers per second, latency per minute (p50, p99, p99.9, max) and each process's
    memory, against time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = run.step
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    windows = _throughput(step)
    top.plot([i * WINDOW_S for i in range(len(windows))], windows, marker=".", label="answered")
    top.axhline(step.rate, color="grey", linestyle="--", label="offered")
    top.set_ylabel(f"requests/s ({WINDOW_S} s windows)")
    top.set_title(f"Soak: {run.actions:,} mixed actions open loop at {step.rate:g}/s")
    top.legend(fontsize=8)
    minutes = sorted(step.per_minute)
    for label, percentile in (("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9), ("max", 100.0)):
        values = [arrivals.ms(step.per_minute[m], percentile) for m in minutes]
        middle.plot([min(m * 60 + 30, run.duration_s) for m in minutes], values, marker=".", label=label)
    middle.set_yscale("log")
    middle.set_ylabel("latency per minute, ms (log)")
    middle.legend(fontsize=8, ncol=4)
    bottom.set_prop_cycle(color=plt.cm.tab20.colors)  # more processes than the default ten colours
    for name in run.memory[0][1]:
        bottom.plot([t for t, _ in run.memory], [m.get(name, 0.0) for _, m in run.memory], label=name)
    # Log scale: the Firestore emulator keeps every idempotency record in memory (it does
    # not enforce TTL) and would flatten the function processes' lines on a linear axis.
    bottom.set_yscale("log")
    bottom.set_ylabel("memory, PSS MiB (log)")
    bottom.set_xlabel("seconds (latency: by intended send time)")
    bottom.legend(fontsize=7, ncol=4)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
