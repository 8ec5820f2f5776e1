"""`python -m bench.reconcile`: the reconciliation's full run beside its incremental one
on a grown ledger: seconds and rows read by each (docs/operations.md#reconciliation-incremental-and-full).

Grows the ledger by `--count` transactions (bench/erp_export.py's seed, as
bench.system_balance does), runs the full reconciliation (which reads everything and
moves the checkpoint to the end), posts `--tail` more (a day's new transactions), then
runs the incremental one. Both run as `python -m common.reconcile` does, in one
repeatable-read snapshot, as the database's owner (no statement limit). A run that
finds a violation fails the benchmark; the figures are printed, never judged. Publish
them (`--out`, in bench/results/) only from a quiet machine.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
import pg8000.native

from bench.erp_export import seed
from common.reconcile import reconcile
from emulators.stack import Stack


def timed_run(stack: Stack, full: bool, dsn: dict[str, Any] | None = None) -> dict[str, Any]:
    """One reconciliation as `python -m common.reconcile [--full]` runs it (one
    repeatable-read snapshot, the checkpoint advanced when nothing is found), timed, on
    the stack's ledger or `dsn`'s database; any violation fails the run."""
    con = pg8000.native.Connection(**(dsn or stack.owner_dsn()))
    try:
        con.run("SET statement_timeout = 0")
        started = time.perf_counter()
        con.run("START TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        answer = reconcile(lambda statement, **params: con.run(statement, **params), full)
        con.run("COMMIT")
        answer["seconds"] = time.perf_counter() - started
    finally:
        con.close()
    if not answer["ok"]:
        raise RuntimeError(f"the {answer['mode']} run found violations: {answer['violations']}")
    return answer


def run(stack: Stack, count: int, tail: int) -> list[dict[str, Any]]:
    seed(stack, count)
    full = timed_run(stack, full=True)
    seed(stack, tail)  # after the checkpoint: what the next daily run has to read
    incremental = timed_run(stack, full=False)
    return [full, incremental]


def table(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| mode | seconds | transactions read | entries read | lot movements | spend charges | wallets |"
        " checkpoint passed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for answer in runs:
        read = answer["examined"]
        lines.append(
            f"| {answer['mode']} | {answer['seconds']:.2f} | {read['transactions']:,} | {read['entries']:,}"
            f" | {read['lot_movements']:,} | {read['spend_charges']:,} | {read['wallets']:,}"
            f" | {answer['horizon']['transactions_passed']:,} |"
        )
    return "\n".join(lines)


@click.command()
@click.option("--count", default=1_000_000, show_default=True, help="Transactions to grow the ledger by first.")
@click.option("--tail", default=100_000, show_default=True, help="Transactions after the checkpoint (a day's).")
@click.option("--profile", default="dev", show_default=True, help="Which local stack to drive.")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the table here (a quiet machine only).")
def main(count: int, tail: int, profile: str, out: Path | None) -> None:
    text = table(run(Stack(profile), count, tail))
    print(text)
    if out:
        out.write_text("# Reconciliation: full and incremental\n\n" + text + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
