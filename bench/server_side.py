"""`python -m bench.server_side`: the posting function's own cost inside Postgres.

pgbench's C client posts the same transfer two ways against the same Postgres, in
alternating rounds: as plain SQL (bench/sql/transfer.pgbench) and as one call to
ledger.commit_posting() (bench/sql/commit_posting.pgbench). Their ratio is the
server-side figure of `make bench` (target 1, server side) without the rest of the
suite: a quick before/after check for any change to the database's code.
"""

from __future__ import annotations

import os
import statistics

import click

from emulators.stack import Stack


@click.command()
@click.option("--rounds", default=3, show_default=True, help="Alternating rounds of each script.")
@click.option("--duration", default=15.0, show_default=True, help="Seconds measured per round.")
@click.option("--workers", default=8, show_default=True, help="pgbench clients.")
@click.option("--wallets", default=10_000, show_default=True, help="Wallets for the uniform transfers.")
@click.option("--profile", default="dev", show_default=True, help="Which local stack to drive.")
def main(rounds: int, duration: float, workers: int, wallets: int, profile: str) -> None:
    stack = Stack(profile)
    os.environ.update(stack.in_process_env())
    from bench import events, pgbench, setup

    stack.stop_service("scheduler")  # an ERP export tick must not land in a round
    data = setup.prepare(stack, wallets)
    before = events.high_water(stack)
    plain: list[float] = []
    direct: list[float] = []
    rows = ["| round | plain SQL /s | ledger.commit_posting() /s | ratio |", "|---:|---:|---:|---:|"]
    for round_no in range(1, rounds + 1):
        click.echo(f"  round {round_no} of {rounds} ...", err=True)
        plain.append(pgbench.transfer_baseline(stack, data, workers, duration).throughput)
        direct.append(pgbench.transfer_baseline(stack, data, workers, duration, pgbench.DIRECT).throughput)
        rows.append(f"| {round_no} | {plain[-1]:,.0f} | {direct[-1]:,.0f} | {direct[-1] / plain[-1]:.2f}x |")
    rows.append(
        f"| best | {max(plain):,.0f} | {max(direct):,.0f} | {max(direct) / max(plain):.2f}x |\n"
        f"| median | {statistics.median(plain):,.0f} | {statistics.median(direct):,.0f} |"
        f" {statistics.median(direct) / statistics.median(plain):.2f}x |"
    )
    # pgbench's postings have no consumer: leave no backlog for the outbox sweeper.
    setup.mark_events_published(stack, before)
    click.echo("\n".join(rows))


if __name__ == "__main__":
    main()
