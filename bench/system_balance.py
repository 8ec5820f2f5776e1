"""`python -m bench.system_balance`: a system account's balance read on a grown ledger,
summed over all its history (the old read) beside its checkpoint plus the entries after
it (`ledger.system_balance()`, docs/ledger-model.md#system-account-balances).

Grows the ledger by `--count` transactions of the ERP export benchmark's asset (a
quarter of them top-ups through its one funding account: bench/erp_export.py's seed),
advances the checkpoints until caught up (transactions/s of the step), then reads the
funding account's balance `--reads` times each way: with the checkpoints caught up, and
again with `--tail` transactions posted after them (a tick's lag). Every pair of reads
must agree, or the run fails; the figures are printed, never judged. Publish them (in
bench/results/system_balance.md, `--out`) only from a quiet machine.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import click
import pg8000.native

from bench.erp_export import ASSET, seed
from emulators.stack import Stack

FULL_SUM = "SELECT coalesce(sum(amount), 0) FROM ledger.entries WHERE wallet_id = :w"
CHECKPOINTED = "SELECT ledger.system_balance(:w)"


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


def _reads(con: pg8000.native.Connection, funding: int, reads: int) -> dict[str, tuple[float, float]]:
    timings: dict[str, list[float]] = {"full sum": [], "checkpoint + tail": []}
    for _ in range(reads):
        answers = []
        for name, statement in (("full sum", FULL_SUM), ("checkpoint + tail", CHECKPOINTED)):
            started = time.perf_counter()
            answers.append(con.run(statement, w=funding)[0][0])
            timings[name].append(time.perf_counter() - started)
        if answers[0] != answers[1]:
            raise RuntimeError(f"the reads disagree: full sum {answers[0]}, checkpoint + tail {answers[1]}")
    return {name: _ms(samples) for name, samples in timings.items()}


def run(stack: Stack, count: int, tail: int, reads: int) -> dict[str, object]:
    seed(stack, count)
    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        funding = con.run(
            "SELECT id FROM ledger.wallets WHERE kind = 'system' AND system_role = 'funding' AND asset_code = :a",
            a=ASSET,
        )[0][0]
        entries = con.run("SELECT count(*) FROM ledger.entries WHERE wallet_id = :w", w=funding)[0][0]
        started, advanced = time.monotonic(), 0
        while step := con.run("SELECT ledger.advance_balance_checkpoints(5000)")[0][0]:
            advanced += step
        advance_s = time.monotonic() - started
        caught_up = _reads(con, funding, reads)
        seed(stack, tail)  # posted after the checkpoints: the tail a read adds
        with_tail = _reads(con, funding, reads)
    finally:
        con.close()
    return {
        "funding_entries": entries,
        "advanced": advanced,
        "advance_per_s": advanced / advance_s if advance_s else 0.0,
        "tail_transactions": tail,
        "caught_up": caught_up,
        "with_tail": with_tail,
    }


def table(figures: dict[str, object]) -> str:
    lines = [
        f"funding account entries: {figures['funding_entries']:,}; checkpoints advanced over"
        f" {figures['advanced']:,} transactions at {figures['advance_per_s']:,.0f}/s",
        "",
        "| read | checkpoints | p50 ms | p99 ms |",
        "|---|---|---:|---:|",
    ]
    for state, label in (("caught_up", "caught up"), ("with_tail", f"{figures['tail_transactions']:,} behind")):
        for name, (p50, p99) in figures[state].items():  # type: ignore[attr-defined]
            lines.append(f"| {name} | {label} | {p50:.2f} | {p99:.2f} |")
    return "\n".join(lines)


@click.command()
@click.option("--count", default=1_000_000, show_default=True, help="Transactions to grow the ledger by.")
@click.option("--tail", default=4_200, show_default=True, help="Transactions after the checkpoints (a minute at 70/s).")
@click.option("--reads", default=200, show_default=True, help="Reads of each kind per state.")
@click.option("--profile", default="dev", show_default=True, help="Which local stack to drive.")
@click.option("--out", type=click.Path(path_type=Path), help="Also write the table here (a quiet machine only).")
def main(count: int, tail: int, reads: int, profile: str, out: Path | None) -> None:
    figures = run(Stack(profile), count, tail, reads)
    text = table(figures)
    print(text)
    if out:
        out.write_text("# System account balance reads\n\n" + text + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
