"""What live traffic saw before and during a background job, with no I/O: the accounting
and the table of `python -m bench.background`.

One open-loop run (bench/arrivals.py) carries the traffic of a whole job run: a quiet
window first, then the job, started as the window ends, until it exits. Each request is
charged to the window its intended send time falls in, so a request sent late because
the job stalled the server still counts for the job: `Windows` is a `Step` that also
records each request into the `Step` of its window.

The goal (issue 20): while a job runs, live p99 at most twice the quiet window's and no
live request over 700 ms.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from bench import arrivals
from bench.arrivals import Step

QUIET, DURING, AFTER = "quiet", "during", "after"
GOAL_P99_RATIO = 2.0
GOAL_MAX_MS = 700.0


@dataclass
class Windows(Step):
    """The run's requests, overall and by window. Offsets are from the measured start:
    [0, quiet_s) is the quiet window; from `job_started` (set when the job starts) to
    `job_ended` (set when it exits) the job's; the few requests already claimed when the
    traffic stopped, after."""

    quiet_s: float = 0.0
    job_started: float | None = None
    job_ended: float | None = None
    windows: dict[str, Step] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        for name in (QUIET, DURING, AFTER):
            self.windows[name] = Step(self.rate)

    def window(self, offset_s: float) -> str | None:
        with self._lock:
            started, ended = self.job_started, self.job_ended
        if offset_s < self.quiet_s:
            return QUIET
        if started is None or offset_s < started:
            return None  # between the quiet window's end and the job's start: a few ms
        if ended is None or offset_s <= ended:
            return DURING  # recorded after its answer, before the job was seen to end
        return AFTER

    def mark(self, started: float | None = None, ended: float | None = None) -> None:
        """The job's start or end, as an offset from the measured start."""
        with self._lock:
            if started is not None:
                self.job_started = started
            if ended is not None:
                self.job_ended = ended

    def record(self, offset_s: float, latency_s: float, outcome: str, kind: str) -> None:
        super().record(offset_s, latency_s, outcome, kind)
        name = self.window(offset_s)
        if name is not None:
            self.windows[name].record(offset_s, latency_s, outcome, kind)

    @property
    def quiet(self) -> Step:
        return self.windows[QUIET]

    @property
    def during(self) -> Step:
        return self.windows[DURING]


def failed(step: Step) -> int:
    return step.counted - step.answered


def goal(during: Step, quiet: Step) -> tuple[bool, str]:
    """Whether the job's window meets the goal, and why not."""
    if not during.answered or not quiet.answered:
        return False, "no answers to compare"
    reasons = []
    if during.ms(99) > GOAL_P99_RATIO * quiet.ms(99):
        reasons.append(f"p99 {during.ms(99) / quiet.ms(99):.1f}x quiet")
    if during.max_ms > GOAL_MAX_MS:
        reasons.append(f"max {during.max_ms:,.0f} ms")
    if failed(during):
        reasons.append(f"{failed(during):,} failed")
    return not reasons, ", ".join(reasons)


@dataclass
class Row:
    """One job run: the job, its pacing, what it cleared and what live traffic saw."""

    job: str
    pacing: str
    backlog: int
    seconds: float | None  # time to clear; None: it failed or did not clear
    items: int
    traffic: Windows
    note: str = ""

    @property
    def cleared(self) -> bool:
        return self.seconds is not None

    @property
    def met(self) -> bool:
        return self.cleared and goal(self.traffic.during, self.traffic.quiet)[0]


def _errors(step: Step) -> str:
    return ", ".join(f"{kind} × {n:,}" for kind, n in sorted(step.errors.items())) or "0"


def _cells(step: Step) -> str:
    return " | ".join(arrivals.ms_cells(step.histogram))


def table(rows: list[Row]) -> str:
    """Per job run, its quiet window's row, then its own."""
    lines = [
        "| job | pacing | backlog | time to clear s | items/s | requests | p50 ms | p95 ms | p99 ms | p99.9 ms"
        " | max ms | errors | goal |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        quiet, during = row.traffic.quiet, row.traffic.during
        lines.append(
            f"| {row.job}: quiet before | {row.pacing} | | | | {quiet.counted:,} | {_cells(quiet)}"
            f" | {_errors(quiet)} | |"
        )
        if row.cleared:
            assert row.seconds is not None
            clear, rate = f"{row.seconds:,.1f}", f"{row.items / row.seconds:,.0f}" if row.seconds else "–"
            met, why = goal(during, quiet)
            verdict = "met" if met else f"NOT met ({why})"
        else:
            clear, rate, verdict = "did not clear", "–", "NOT met (the job did not clear)"
        if row.note:
            verdict += f"; {row.note}"
        lines.append(
            f"| **{row.job}** | {row.pacing} | {row.backlog:,} | {clear} | {rate} | {during.counted:,}"
            f" | {_cells(during)} | {_errors(during)} | {verdict} |"
        )
    return "\n".join(lines)
