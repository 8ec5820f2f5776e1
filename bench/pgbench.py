"""The plain-SQL baseline: bench/sql/transfer.pgbench run by pgbench against the same
Postgres, schema and wallets, with the same client count as the core run."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from bench.runner import Result
from bench.setup import BenchData
from emulators.stack import Stack

SQL = Path(__file__).resolve().parent / "sql"
PLAIN = ("pgbench: plain-SQL transfer", SQL / "transfer.pgbench")
DIRECT = ("pgbench: ledger.commit_posting() called directly", SQL / "commit_posting.pgbench")


def transfer_baseline(
    stack: Stack, data: BenchData, clients: int, duration_s: float, script: tuple[str, Path] = PLAIN, warmup_s: int = 2
) -> Result:
    """pgbench's transfers per second with `script`, after an unmeasured warm-up run of
    it (its connections plan their statements while the tables are already filled)."""
    label, path = script
    if warmup_s:
        _pgbench(stack, data, clients, warmup_s, path)
    out = _pgbench(stack, data, clients, max(1, round(duration_s)), path)
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    done = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", out)
    latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
    result = Result(label, clients, elapsed_s=done / tps if tps else 0.0)
    result.outcomes["ok"] = done
    result.outcomes["error"] = int(failed.group(1)) if failed else 0
    result.average_ms = latency  # pgbench reports an average, not per-request latencies
    return result


def _pgbench(stack: Stack, data: BenchData, clients: int, seconds: int, script: Path) -> str:
    first, count = data.wallets[0], len(data.wallets)
    if data.wallets[-1] - first + 1 != count:
        raise SystemExit("pgbench needs the bench wallets' ids to be contiguous")
    dsn = stack.owner_dsn()
    command = [
        str(stack.pg_bin / "pgbench"),
        "-h",
        str(dsn["host"]),
        "-p",
        str(dsn["port"]),
        "-U",
        str(dsn["user"]),
        "-n",
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        str(min(clients, os.cpu_count() or 1)),
        "-T",
        str(seconds),
        "-D",
        f"first={first}",
        "-D",
        f"count={count}",
        "-f",
        str(script),
        str(dsn["database"]),
    ]
    return subprocess.run(
        command, capture_output=True, text=True, check=True, env={**os.environ, "PGPASSWORD": str(dsn["password"])}
    ).stdout
