"""`python -m bench [--quick]`: drive the running dev stack's functions over HTTP, then the
same postings straight through common/, and print where the time goes.

Exits non-zero when any request failed for a reason other than a business refusal:
the quick mode doubles as a correctness smoke test. It never judges speed.
"""

from __future__ import annotations

import os
import sys

import click

from emulators.stack import Stack


@click.command()
@click.option("--quick", is_flag=True, help="Small counts: a smoke run.")
@click.option("--clients", default=16, show_default=True, help="Concurrent clients per scenario.")
@click.option("--duration", default=15.0, show_default=True, help="Seconds measured per scenario.")
@click.option("--wallets", default=1000, show_default=True, help="Wallets to spread load over.")
def main(quick: bool, clients: int, duration: float, wallets: int) -> None:
    stack = Stack("dev")
    if quick:
        duration = min(duration, 3.0)
    # common/ reads its settings once: point it at the dev stack first.
    os.environ.update(stack.env())
    os.environ["LEDGER_DB_POOL_SIZE"] = str(clients)

    from bench import report, runner, scenarios, setup

    data = setup.prepare(stack, wallets)
    bodies = scenarios.bodies(data)
    sections = []
    for title, make in (
        (
            "HTTP through the functions (Firestore idempotency, Redis lock on usage)",
            lambda body: scenarios.http_worker(stack, body),
        ),
        ("Core postings through common/ (no HTTP, no Firestore, no Redis)", scenarios.core_worker),
    ):
        click.echo(f"\n{title}")
        results = []
        for name, body in bodies.items():
            click.echo(f"  running: {name} ...", err=True)
            results.append(runner.run(name, clients, duration, make(body)))
        click.echo(report.table(results))
        sections.append((title, results))
    path = report.write(sections, clients, duration, quick)
    click.echo(f"\nwritten to {path}")
    failures = [(r.scenario, r.error_samples) for _, results in sections for r in results if r.outcomes["error"]]
    if failures:
        click.echo(f"unexpected errors: {failures}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
