"""A closed-loop load runner: N worker threads each repeat one action for a fixed time
and record every latency and outcome."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OK, REFUSED, ERROR = "ok", "refused", "error"


@dataclass
class Result:
    scenario: str
    clients: int
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=lambda: {OK: 0, REFUSED: 0, ERROR: 0})
    error_samples: list[str] = field(default_factory=list)
    average_ms: float | None = None  # set when only an average is known (pgbench)
    probes: tuple[Any, Any] | None = None  # what `probe` read as measuring began and ended
    # group commit in the core runs (warm-up included): database calls, postings they carried
    posting_calls: int = 0
    postings_called: int = 0
    postings: int = 0  # pgbench: transactions of the warm-up and the measured run together

    @property
    def requests(self) -> int:
        return sum(self.outcomes.values())

    @property
    def throughput(self) -> float:
        return self.outcomes[OK] / self.elapsed_s if self.elapsed_s else 0.0

    def merge(self, other: Result) -> None:
        """Fold in the result of the same scenario measured in another process."""
        self.clients += other.clients
        self.elapsed_s = max(self.elapsed_s, other.elapsed_s)
        self.latencies_ms += other.latencies_ms
        for kind, count in other.outcomes.items():
            self.outcomes[kind] += count
        self.error_samples = (self.error_samples + other.error_samples)[:5]
        self.posting_calls += other.posting_calls
        self.postings_called += other.postings_called

    def percentile(self, p: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run(
    scenario: str,
    clients: int,
    duration_s: float,
    make_worker: Callable[[int], Callable[[], str]],
    warmup_s: float = 1.0,
    probe: Callable[[], Any] | None = None,
) -> Result:
    """`make_worker(i)` returns the action of worker i; each call returns OK, REFUSED or an error text.
    `probe`, if given, is read as measuring begins and as it ends (CPU counters, say)."""
    result = Result(scenario, clients)
    lock = threading.Lock()
    start_barrier = threading.Barrier(clients + 1)
    measuring = threading.Event()
    stop = threading.Event()

    def worker(index: int) -> None:
        action = make_worker(index)
        start_barrier.wait()
        local: list[tuple[float, str]] = []
        while not stop.is_set():
            began = time.perf_counter()
            try:
                outcome = action()
            except Exception as error:  # noqa: BLE001 - a benchmark counts failures, it does not stop on them
                outcome = f"{type(error).__name__}: {error}"
            if measuring.is_set():
                local.append(((time.perf_counter() - began) * 1000, outcome))
        with lock:
            for latency, outcome in local:
                result.latencies_ms.append(latency)
                kind = outcome if outcome in (OK, REFUSED) else ERROR
                result.outcomes[kind] += 1
                if kind == ERROR and len(result.error_samples) < 5:
                    result.error_samples.append(outcome)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    start_barrier.wait()
    time.sleep(warmup_s)  # connections, prepared statements and caches warm up unmeasured
    first = probe() if probe else None
    measuring.set()
    began = time.perf_counter()
    time.sleep(duration_s)
    measuring.clear()
    result.elapsed_s = time.perf_counter() - began
    if probe:
        result.probes = (first, probe())
    stop.set()
    for thread in threads:
        thread.join()
    return result
