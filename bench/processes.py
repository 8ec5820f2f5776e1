"""Memory of the local stack's processes, read from /proc.

PSS (proportional set size), not RSS: Postgres backends all map the same shared
buffers, and RSS would count them once per backend."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from bench.runner import Result
from emulators.stack import Stack


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, process group) of a process, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[2])


def _pss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def stack_processes(stack: Stack) -> dict[str, list[int]]:
    """Service name -> its pids: each spawned service's process group, and Postgres'
    postmaster with its backends."""
    groups = json.loads((stack.state_dir / "state.json").read_text())
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    stats = {pid: _stat(pid) for pid in pids}
    found: dict[str, list[int]] = {name: [] for name in groups}
    by_group = {pgid: name for name, pgid in groups.items()}
    for pid, stat in stats.items():
        if stat and stat[1] in by_group:
            found[by_group[stat[1]]].append(pid)
    postmaster_file = stack.pg_dir / "data" / "postmaster.pid"
    if postmaster_file.exists():
        postmaster = int(postmaster_file.read_text().split()[0])
        found["postgres"] = [postmaster] + [pid for pid, stat in stats.items() if stat and stat[0] == postmaster]
    return found


def memory(stack: Stack) -> dict[str, float]:
    """Service name -> total PSS in MiB of its processes."""
    return {name: sum(_pss_mib(pid) for pid in pids) for name, pids in stack_processes(stack).items()}


def _cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and of its children that have exited and been reaped
    (utime + stime + cutime + cstime): pgbench's backends and the core run's worker
    processes are gone by the time a run ends, but their parents hold their time."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def cpu(stack: Stack) -> dict[str, float]:
    """Service name -> CPU seconds its processes have used so far, plus this process
    and its children (the load generators, pgbench included) as "load client"."""
    used = {name: sum(_cpu_seconds(pid) for pid in pids) for name, pids in stack_processes(stack).items()}
    used["load client"] = _cpu_seconds(os.getpid())
    return used


def cpu_table(before: dict[str, float], after: dict[str, float], requests: int, elapsed_s: float) -> str:
    """Each process's CPU per request over a run, and its share of the machine."""
    cores = os.cpu_count() or 1
    spent = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}
    rows = ["| process | CPU ms per action | share of all cores |", "|---|---:|---:|"]
    for name, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        if seconds > 0:
            rows.append(f"| {name} | {seconds * 1000 / max(requests, 1):.2f} | {seconds / (elapsed_s * cores):.0%} |")
    total = sum(spent.values())
    rows.append(f"| **all** | {total * 1000 / max(requests, 1):.2f} | {total / (elapsed_s * cores):.0%} |")
    return "\n".join(rows)


class CpuMeter:
    """CPU per action of Postgres and of the load client over whole runs (warm-up
    included, so actions are estimated as throughput x wall time)."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self.rows: list[tuple[str, float, dict[str, float]]] = []

    def measure(self, label: str, run: Callable[[], Result]) -> Result:
        before, began = cpu(self._stack), time.perf_counter()
        result = run()
        after, wall_s = cpu(self._stack), time.perf_counter() - began
        actions = max(result.throughput * wall_s, 1.0)
        per_action = {name: (after[name] - before.get(name, 0.0)) * 1000 / actions for name in after}
        self.rows.append((label, result.throughput, per_action))
        return result

    def table(self) -> str:
        rows = [
            "| run | actions/s | Postgres CPU ms per action | client CPU ms per action | both |",
            "|---|---:|---:|---:|---:|",
        ]
        for label, throughput, per_action in self.rows:
            server, client = per_action.get("postgres", 0.0), per_action.get("load client", 0.0)
            rows.append(f"| {label} | {throughput:,.0f} | {server:.3f} | {client:.3f} | {server + client:.3f} |")
        return "\n".join(rows)
