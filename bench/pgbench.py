"""The plain-SQL baseline: bench/sql/transfer.pgbench run by pgbench against the same
Postgres, schema and wallets, with the same client count as the core run."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from bench.runner import Result
from bench.setup import BenchData
from emulators.stack import PG_BIN, Stack

SCRIPT = Path(__file__).resolve().parent / "sql" / "transfer.pgbench"


def transfer_baseline(stack: Stack, data: BenchData, clients: int, duration_s: float, warmup_s: int = 2) -> Result:
    """pgbench's transfers per second, after an unmeasured warm-up run of the same script
    (its connections plan their statements while the tables are already filled)."""
    if warmup_s:
        _pgbench(stack, data, clients, warmup_s)
    out = _pgbench(stack, data, clients, max(1, round(duration_s)))
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    done = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", out)
    latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
    result = Result("pgbench: plain-SQL transfer", clients, elapsed_s=done / tps if tps else 0.0)
    result.outcomes["ok"] = done
    result.outcomes["error"] = int(failed.group(1)) if failed else 0
    result.average_ms = latency  # pgbench reports an average, not per-request latencies
    return result


def _pgbench(stack: Stack, data: BenchData, clients: int, seconds: int) -> str:
    first, count = data.wallets[0], len(data.wallets)
    if data.wallets[-1] - first + 1 != count:
        raise SystemExit("pgbench needs the bench wallets' ids to be contiguous")
    dsn = stack.owner_dsn()
    command = [
        str(PG_BIN / "pgbench"),
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
        str(SCRIPT),
        str(dsn["database"]),
    ]
    return subprocess.run(
        command, capture_output=True, text=True, check=True, env={**os.environ, "PGPASSWORD": str(dsn["password"])}
    ).stdout
