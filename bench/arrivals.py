"""Open-loop scheduling and accounting, with no I/O: what `python -m bench.openloop` runs.

A closed loop (N clients, each sending when its last answer came) slows down with the
server, so a stalled server is sent less and its queue never shows in the figures
(coordinated omission). Here request i has an intended send time fixed in advance,
and its latency runs from that time to its answer, however long it waited for a free
worker. Workers claim the next request in order, wait for its time, send it, record
it: a bounded pool (what a real client has) in which a slow server makes requests
queue while the schedule keeps going, as in wrk2.

The clock, the sleep and the sender are injected: the unit tests drive it with a fake
clock and a fake sender, so they check the accounting, never the machine's speed.
Latencies are recorded in HDR histograms (microseconds, 3 significant digits): one over
the whole step, one per kind of request, and one per minute of intended send time (the
soak's latency over time); answers are also counted per second (its throughput over time).
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

ANSWERED = ("ok", "refused")  # a business refusal (409, 422) is an answer, timed like a success
TIMEOUT = "timeout"
NOT_SENT = "timeout (not sent)"  # its time plus the timeout passed before a worker was free
HIGHEST_US = 3_600 * 1_000_000
PERCENTILES = (50.0, 95.0, 99.0, 99.9)
Sent = str | tuple[str, str]  # what a sender returns: an outcome, or (outcome, kind of request)


def histogram() -> HdrHistogram:
    return HdrHistogram(1, HIGHEST_US, 3)


def ms(histogram: HdrHistogram, percentile: float) -> float:
    """The latency at `percentile` in ms (100: the maximum)."""
    return histogram.get_value_at_percentile(percentile) / 1000


def ms_cells(histogram: HdrHistogram) -> list[str]:
    """p50, p95, p99, p99.9 and max in ms, as table cells ("–" with nothing recorded)."""
    if not histogram.get_total_count():
        return ["–"] * (len(PERCENTILES) + 1)
    return [f"{ms(histogram, p):,.1f}" for p in (*PERCENTILES, 100.0)]


def uniform(rate: float, seconds: float) -> list[float]:
    """Offsets i / rate below `seconds`: the same schedule on every run."""
    return [i / rate for i in range(int(seconds * rate + 0.5)) if i / rate < seconds]


def poisson(rate: float, seconds: float, seed: int) -> list[float]:
    """Exponential gaps of mean 1 / rate below `seconds`, seeded: bursts, reproducibly."""
    rng, offsets, at = random.Random(seed), [], 0.0
    while (at := at + rng.expovariate(rate)) < seconds:
        offsets.append(at)
    return offsets


@dataclass
class Step:
    """One offered rate: every measured request is in exactly one of `histogram`
    (answered), `errors` (by status or exception) and `timeouts`."""

    rate: float
    scheduled: int = 0  # measured requests the schedule held
    histogram: HdrHistogram = field(default_factory=histogram)
    outcomes: Counter[str] = field(default_factory=Counter)
    window_s: float = 0.0  # measured window's first intended send to its last answer
    # the same requests again, by kind of request (when the sender names it) and over time
    by_kind: dict[str, HdrHistogram] = field(default_factory=dict)
    kind_outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    per_minute: dict[int, HdrHistogram] = field(default_factory=dict)  # minute of intended send
    per_second: Counter[int] = field(default_factory=Counter)  # answers by second of answer
    measured_from: float | None = None  # the clock's reading when the measured window began

    def record(self, offset_s: float, latency_s: float, outcome: str, kind: str) -> None:
        """One measured request: due `offset_s` after the measured window began, done
        `latency_s` after that; failures are counted, only answers are timed."""
        self.outcomes[outcome] += 1
        if kind:
            self.kind_outcomes[(kind, outcome)] += 1
        if outcome not in ANSWERED:
            return
        micros = max(1, round(latency_s * 1_000_000))
        self.histogram.record_value(micros)
        if kind:
            self.by_kind.setdefault(kind, histogram()).record_value(micros)
        self.per_minute.setdefault(int(offset_s // 60), histogram()).record_value(micros)
        self.per_second[int(offset_s + latency_s)] += 1

    @property
    def answered(self) -> int:
        return sum(self.outcomes[kind] for kind in ANSWERED)

    @property
    def errors(self) -> dict[str, int]:
        return {kind: n for kind, n in self.outcomes.items() if kind not in ANSWERED}

    @property
    def counted(self) -> int:
        return sum(self.outcomes.values())

    @property
    def achieved(self) -> float:
        return self.answered / self.window_s if self.window_s else 0.0

    def ms(self, percentile: float) -> float:
        return ms(self.histogram, percentile)

    @property
    def max_ms(self) -> float:
        return self.histogram.get_max_value() / 1000


def run_step(
    rate: float,
    offsets: list[float],
    warmup_s: float,
    send: Callable[[int], Sent],
    workers: int,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    timeout_s: float,
    step: Step | None = None,
    until: Callable[[], bool] | None = None,
) -> Step:
    """Send request i at start + offsets[i] from `workers` threads. `send(worker)` sends
    one request and returns its outcome: "ok", "refused", "timeout", or an error's name
    ("HTTP 503", an exception's type), alone or with the kind of request it sent.
    Requests due before `warmup_s` are sent but not recorded. A request still unclaimed
    `timeout_s` after its time is not sent. Records into `step` if given (another
    thread may watch its counts grow), else into a new one. `until`: once it returns
    True no further request is claimed, and the schedule ends there (a run as long as
    something else takes, bench/background.py); requests already claimed are sent."""
    step = step if step is not None else Step(rate)
    start = clock() + 0.05  # every worker is ready before the first request is due
    step.measured_from = start + warmup_s
    claimed = [0]
    tickets: Iterator[int] = itertools.count()
    lock = threading.Lock()
    last_answer = [start + warmup_s]

    def work(worker: int) -> None:
        while True:
            with lock:
                if until is not None and until():
                    return
                index = next(tickets)
                if index >= len(offsets):
                    return
                claimed[0] = max(claimed[0], index + 1)
            intended = start + offsets[index]
            if (wait := intended - clock()) > 0:
                sleep(wait)
            sent: Sent
            if clock() > intended + timeout_s:
                sent = NOT_SENT
            else:
                try:
                    sent = send(worker)
                except Exception as error:  # noqa: BLE001 - a load generator counts failures, it goes on
                    sent = type(error).__name__
            answered = clock()
            if offsets[index] < warmup_s:
                continue
            outcome, kind = sent if isinstance(sent, tuple) else (sent, "")
            with lock:
                step.record(offsets[index] - warmup_s, answered - intended, outcome, kind)
                last_answer[0] = max(last_answer[0], answered)

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    step.scheduled = sum(1 for offset in offsets[: claimed[0]] if offset >= warmup_s)
    step.window_s = last_answer[0] - (start + warmup_s)
    return step


def stop_reason(step: Step, max_p99_ms: float, max_errors: int) -> str | None:
    """Why the step-up ends after `step`, or None to go on."""
    failed = step.counted - step.answered
    if failed > max_errors:
        return f"{failed:,} errors or timeouts at {step.rate:g}/s (more than {max_errors})"
    if step.answered and step.ms(99) > max_p99_ms:
        return f"p99 {step.ms(99):,.1f} ms at {step.rate:g}/s (above {max_p99_ms:g} ms)"
    return None


def step_up(
    first_rate: float, max_rate: float, measure: Callable[[float], Step], max_p99_ms: float, max_errors: int
) -> tuple[list[Step], str]:
    """Measure `first_rate`, then double it, until a step passes a threshold or the next
    rate would be above `max_rate`. Returns the steps and why it stopped."""
    steps, rate = [], first_rate
    while True:
        steps.append(measure(rate))
        if reason := stop_reason(steps[-1], max_p99_ms, max_errors):
            return steps, reason
        rate *= 2
        if rate > max_rate:
            return steps, f"the next rate, {rate:g}/s, is above --max-rate {max_rate:g}"
