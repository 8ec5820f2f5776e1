"""`python -m bench.server_side`: the posting function's own cost inside Postgres,
side by side with pgledger's.

pgbench's C client runs, in alternating rounds against the same Postgres: our transfer
as plain SQL (bench/sql/transfer.pgbench) and as one call to ledger.commit_posting()
(bench/sql/commit_posting.pgbench), pgledger's uniform transfer (in its own database,
bench/pgledger.py), then our hot treasury's top-ups (bench/sql/topup_treasury.pgbench)
and pgledger's hot account; with `--core` (the default) also our core from Python (the
uniform transfer through common/'s posting path, bench/core_procs.py), reported against
pgledger too. It prints each figure, the issue's ratios, the Postgres CPU per posting of
each and the Cloud SQL sizing that follows (bench/side_by_side.py): the server-side
figures of `make bench` without the rest of the suite.
"""

from __future__ import annotations

import os

import click

from emulators.stack import Stack


@click.command()
@click.option("--rounds", default=3, show_default=True, help="Alternating rounds of each script.")
@click.option("--duration", default=15.0, show_default=True, help="Seconds measured per round.")
@click.option("--warmup", default=2, show_default=True, help="Unmeasured seconds before each run.")
@click.option("--workers", default=8, show_default=True, help="pgbench clients for the uniform transfers.")
@click.option("--hot-workers", default=32, show_default=True, help="pgbench clients for the hot treasuries.")
@click.option("--wallets", default=10_000, show_default=True, help="Wallets for the uniform transfers.")
@click.option("--core/--no-core", default=True, show_default=True, help="Our core from Python in the rounds too.")
@click.option("--profile", default="dev", show_default=True, help="Which local stack to drive.")
def main(  # noqa: PLR0913
    rounds: int, duration: float, warmup: int, workers: int, hot_workers: int, wallets: int, core: bool, profile: str
) -> None:
    stack = Stack(profile)
    os.environ.update(stack.in_process_env())
    from bench import core_procs, events, scenarios, setup, side_by_side

    stack.stop_service("scheduler")  # an ERP export tick must not land in a round
    data = setup.prepare(stack, wallets)
    before = events.high_water(stack)
    uniform = next(name for name in scenarios.bodies(data) if name.startswith("transfer"))
    from_python = (lambda: core_procs.run(uniform, workers, duration, data)) if core else None
    found = side_by_side.contenders(stack, data, workers, hot_workers, duration, core=from_python, warmup_s=warmup)
    side_by_side.run_rounds(stack, found, rounds, postings=lambda: events.high_water(stack))
    # pgbench's postings have no consumer: leave no backlog for the outbox sweeper.
    setup.mark_events_published(stack, before)
    click.echo(side_by_side.report(found))


if __name__ == "__main__":
    main()
