"""pgbench scripts against the stack's Postgres: the plain-SQL baseline
(bench/sql/transfer.pgbench), ledger.commit_posting() called directly, the hot treasury's
top-ups, and (bench/pgledger.py) pgledger's scripts in a database of its own."""

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
TREASURY = ("pgbench: top-ups through one treasury, ledger.commit_posting()", SQL / "topup_treasury.pgbench")


def transfer_baseline(
    stack: Stack, data: BenchData, clients: int, duration_s: float, script: tuple[str, Path] = PLAIN, warmup_s: int = 2
) -> Result:
    """pgbench's transfers per second with `script` over the bench wallets, after an
    unmeasured warm-up run of it (its connections plan their statements while the tables
    are already filled)."""
    first, count = data.wallets[0], len(data.wallets)
    if data.wallets[-1] - first + 1 != count:
        raise SystemExit("pgbench needs the bench wallets' ids to be contiguous")
    defines = {"first": first, "count": count}
    if script == TREASURY:
        from bench.setup import funding_account

        defines["funding"] = funding_account(stack)
    return run_script(stack, script, clients, duration_s, warmup_s, defines=defines)


def run_script(
    stack: Stack,
    script: tuple[str, Path],
    clients: int,
    duration_s: float,
    warmup_s: int = 2,
    database: str | None = None,
    defines: dict[str, int] | None = None,
) -> Result:
    """One script's rate after an unmeasured warm-up. `Result.postings` counts the
    transactions of both runs, for a cost per posting over everything measured around it."""
    label, path = script
    warmed = _processed(_pgbench(stack, clients, warmup_s, path, database, defines)) if warmup_s else 0
    out = _pgbench(stack, clients, max(1, round(duration_s)), path, database, defines)
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    done = _processed(out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
    result = Result(label, clients, elapsed_s=done / tps if tps else 0.0)
    result.outcomes["ok"] = done
    result.outcomes["error"] = int(failed.group(1)) if failed else 0
    result.average_ms = latency  # pgbench reports an average, not per-request latencies
    result.postings = warmed + done
    return result


def _processed(out: str) -> int:
    return int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))


def _pgbench(
    stack: Stack, clients: int, seconds: int, script: Path, database: str | None, defines: dict[str, int] | None
) -> str:
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
        *[arg for name, value in (defines or {}).items() for arg in ("-D", f"{name}={value}")],
        "-f",
        str(script),
        database or str(dsn["database"]),
    ]
    return subprocess.run(
        command, capture_output=True, text=True, check=True, env={**os.environ, "PGPASSWORD": str(dsn["password"])}
    ).stdout
