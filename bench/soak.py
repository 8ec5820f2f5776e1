"""`python -m bench.soak [--actions 700000]`: the seed's test size, end to end.

The mixed workload over HTTP (idempotency, locks, Firestore and Postgres all on) until
`--actions` requests have been answered. It reports the duration, throughput over time
and each stack process's memory at start, along the way and at the end (bench/results/
soak.png and soak.md), then checks the money invariants. It fails on any request that
failed other than by a business refusal, or on any broken invariant.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections import Counter

import click

from emulators.stack import Stack


@click.command()
@click.option("--actions", default=700_000, show_default=True)
@click.option("--clients", default=32, show_default=True)
@click.option("--wallets", default=10_000, show_default=True)
@click.option("--profile", default="dev", show_default=True)
def main(actions: int, clients: int, wallets: int, profile: str) -> None:
    stack = Stack(profile)
    os.environ.update(stack.in_process_env())
    from bench import events, mixed, processes, report, setup
    from common.adapters.reconciliation import find_violations

    data = setup.prepare(stack, wallets)
    events_before = events.high_water(stack)
    tickets = itertools.count()
    per_second: Counter[int] = Counter()
    outcomes: Counter[str] = Counter()
    errors: list[str] = []
    lock = threading.Lock()
    began = time.monotonic()

    def client(index: int) -> None:
        act = mixed.worker(stack, data, [])(index)
        while next(tickets) < actions:
            try:
                outcome = act()
            except Exception as error:  # noqa: BLE001 - counted as a failure; the client goes on
                outcome = f"{type(error).__name__}: {error}"
            second = int(time.monotonic() - began)
            with lock:
                per_second[second] += 1
                outcomes[outcome if outcome in ("ok", "refused") else "error"] += 1
                if outcome not in ("ok", "refused") and len(errors) < 10:
                    errors.append(outcome)

    memory = [(0.0, processes.memory(stack))]
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        time.sleep(1)
        elapsed = time.monotonic() - began
        if elapsed - memory[-1][0] >= 30:
            memory.append((elapsed, processes.memory(stack)))
        done = sum(outcomes.values())
        if int(elapsed) % 30 == 0:
            click.echo(f"  {elapsed:6.0f} s  {done:>9,} actions  {done / elapsed:7.0f}/s", err=True)
    duration = time.monotonic() - began
    memory.append((duration, processes.memory(stack)))

    event_counts = events.summary(stack, events_before, settle_s=60)
    import pg8000.native

    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        violations = find_violations(lambda sql: con.run(sql))
    finally:
        con.close()

    from bench.http_client import resent

    text = report.soak_report(
        actions, clients, duration, outcomes, per_second, memory, violations, errors, resent.value, event_counts
    )
    click.echo(text)
    if outcomes["error"] or violations or event_counts[1]:
        sys.exit(1)


if __name__ == "__main__":
    main()
