"""`make soak` (`python -m bench.soak`): the seed's test size, end to end, open loop.

`--actions` requests of the mixed workload over HTTP (bench/mixed.py: idempotency, locks,
Firestore and Postgres all on) sent at a fixed `--rate` by the open-loop generator of
bench/arrivals.py: request i is due at start + i / rate, and its latency runs from that
intended send time to its answer, however long it queued for one of `--workers`. Every
request is recorded, in one HDR histogram and in one per action, with answers per second
and a histogram per minute for latency over time; errors and timeouts are counted apart,
by status. Each stack process's memory is sampled every 30 s. The scheduler keeps
running, as in production: its ticks (outbox sweeper, ERP export) are part of the load.

Afterwards every event must reach Pub/Sub (the outbox drains) and the money invariants
must hold. Prints the report (bench/soak_report.py); with `--write` (the make target)
also writes soak.md and soak.png. Exits 1 on any request that failed other than by a
business refusal, a request not counted exactly once, an event left unpublished, or a
broken invariant.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import click

from bench import arrivals
from bench.report import RESULTS
from emulators.stack import Stack

# The closed-loop soak (32 clients, bench/results/soak.md of 2026-11-25) sustained 284
# actions/s over all 700,000, and the suite's mixed run 361/s at a p95 of 174 ms: both
# saturated. An open loop at a saturated rate queues without bound at the first hiccup
# (an ERP export pass, a checkpoint), so the default leaves about 30 % headroom: 200/s,
# 700,000 actions in 58 minutes. The reference rate, 70/s, is `RATE=70` (2 h 47 min).
DEFAULT_RATE = 200.0


def _progress(step: arrivals.Step, elapsed_s: float, actions: int) -> str:
    return (
        f"  {elapsed_s:6.0f} s  {step.counted:>9,} of {actions:,} answered or failed"
        f"  ({step.counted - step.answered:,} failed)  p99 so far {step.ms(99) if step.answered else 0:,.1f} ms"
    )


@click.command()
@click.option("--actions", default=700_000, show_default=True, help="Requests scheduled; every one is recorded.")
@click.option("--rate", default=DEFAULT_RATE, show_default=True, help="Fixed arrival rate, requests/s.")
@click.option("--workers", default=64, show_default=True, help="Bounded pool of sending threads.")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds before a request counts as timed out.")
@click.option("--wallets", default=10_000, show_default=True)
@click.option("--profile", default="dev", show_default=True, help="Which local stack to drive (the tests use test).")
@click.option("--write", is_flag=True, help="Write soak.md and soak.png into --results.")
@click.option(
    "--results",
    "results_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=RESULTS,
    show_default=True,
    help="Where --write writes.",
)
def main(
    actions: int, rate: float, workers: int, timeout: float, wallets: int, profile: str, write: bool, results_dir: Path
) -> None:
    stack = Stack(profile)
    os.environ.update(stack.in_process_env())
    from bench import events, mixed, processes, setup, soak_report
    from bench.http_client import resent

    data = setup.prepare(stack, wallets)
    send = mixed.open_loop_sender(stack, data, workers, timeout)
    events_before = events.high_water(stack)
    offsets = [i / rate for i in range(actions)]
    step = arrivals.Step(rate)
    began = time.monotonic()
    memory = [(0.0, processes.memory(stack))]
    sender = threading.Thread(
        target=arrivals.run_step,
        args=(rate, offsets, 0.0, send, workers, time.monotonic, time.sleep, timeout, step),
        daemon=True,
    )
    sender.start()
    while sender.is_alive():
        sender.join(1.0)
        elapsed = time.monotonic() - began
        if elapsed - memory[-1][0] >= 30:
            memory.append((elapsed, processes.memory(stack)))
            click.echo(_progress(step, elapsed, actions), err=True)
    duration = time.monotonic() - began
    memory.append((duration, processes.memory(stack)))

    event_counts = events.summary(stack, events_before, settle_s=60)
    violations = events.money_violations(stack)
    command = (
        f"python -m bench.soak --actions {actions} --rate {rate:g} --workers {workers} --timeout {timeout:g}"
        f" --wallets {wallets}"
    )
    run = soak_report.Run(command, actions, duration, step, memory, event_counts, violations, resent.value)
    text = soak_report.markdown(run)
    click.echo(text)
    if write:
        soak_report.write(run, text, results_dir)
    if step.counted != actions or step.counted != step.answered or violations or event_counts[1]:
        sys.exit(1)


if __name__ == "__main__":
    main()
