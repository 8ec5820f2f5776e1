"""`make bench-latency` (`python -m bench.openloop`): latency under a fixed arrival rate.

The end-to-end HTTP mix of bench/mixed.py (top-up 20 %, usage 60 %, transfer 15 %,
void 5 %) sent open loop (bench/arrivals.py): `--rate` requests/s, then doubling, until
p99 passes `--max-p99-ms` or more than `--max-errors` requests fail or time out. Each
step has an unrecorded warm-up. Latency runs from each request's intended send time to
its answer, into an HDR histogram; errors and timeouts are counted apart, by kind.

Prints a table per rate; with `--write` (the make target) also writes
bench/results/latency.md and latency.png. Then the money invariants must hold. Exits 1
if a step did not count every request it scheduled, or on a broken invariant; errors
under load are a result, not a failure.
"""

from __future__ import annotations

import os
import sys
import time

import click

from bench import arrivals
from bench.arrivals import Step
from bench.report import RESULTS, machine
from emulators.stack import Stack


def _table(steps: list[Step]) -> str:
    rows = [
        "| offered /s | achieved /s | requests | refused | p50 ms | p95 ms | p99 ms | p99.9 ms | max ms"
        " | errors and timeouts |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in steps:
        timed = arrivals.ms_cells(s.histogram)
        errors = ", ".join(f"{kind} × {n:,}" for kind, n in sorted(s.errors.items())) or "0"
        rows.append(
            f"| {s.rate:g} | {s.achieved:,.1f} | {s.scheduled:,} | {s.outcomes['refused']:,} | "
            + " | ".join(timed)
            + f" | {errors} |"
        )
    return "\n".join(rows)


def _plot(steps: list[Step], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    answered = [s for s in steps if s.answered]
    rates = [s.rate for s in answered]
    for label, percentile in (("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("p99.9", 99.9), ("max", 100.0)):
        axes.plot(rates, [s.ms(percentile) for s in answered], marker="o", label=label)
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xticks(rates, [f"{r:g}" for r in rates])
    axes.set_xlabel("offered load, requests/s (fixed arrival rate)")
    axes.set_ylabel("latency from intended send time, ms")
    axes.set_title("Mixed HTTP workload, open loop")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)


@click.command()
@click.option("--rate", default=70.0, show_default=True, help="First offered rate, requests/s.")
@click.option("--max-rate", default=4480.0, show_default=True, help="No step above this rate.")
@click.option("--max-p99-ms", default=200.0, show_default=True, help="Stop after a step whose p99 is above this.")
@click.option("--max-errors", default=0, show_default=True, help="Stop after a step with more failed requests.")
@click.option("--goal-p99-ms", default=100.0, show_default=True, help="Report the highest rate with p99 under this.")
@click.option("--duration", default=30.0, show_default=True, help="Seconds recorded per rate.")
@click.option("--warmup", default=5.0, show_default=True, help="Seconds sent, unrecorded, before each rate.")
@click.option("--workers", default=64, show_default=True, help="Bounded pool of sending threads.")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds before a request counts as timed out.")
@click.option("--arrivals", "schedule", type=click.Choice(["uniform", "poisson"]), default="uniform", show_default=True)
@click.option("--seed", default=18, show_default=True, help="Seed of the Poisson schedule.")
@click.option("--wallets", default=10_000, show_default=True)
@click.option("--profile", default="dev", show_default=True, help="Which local stack to drive (the tests use test).")
@click.option("--write", is_flag=True, help="Write bench/results/latency.md and latency.png.")
def main(
    rate: float,
    max_rate: float,
    max_p99_ms: float,
    max_errors: int,
    goal_p99_ms: float,
    duration: float,
    warmup: float,
    workers: int,
    timeout: float,
    schedule: str,
    seed: int,
    wallets: int,
    profile: str,
    write: bool,
) -> None:
    stack = Stack(profile)
    os.environ.update(stack.in_process_env())
    from bench import events, mixed, setup
    from bench.http_client import resent

    # An ERP export tick would land in the middle of a step (make dev starts it again).
    stack.stop_service("scheduler")
    data = setup.prepare(stack, wallets)
    send = mixed.open_loop_sender(stack, data, workers, timeout)

    def measure(offered: float) -> Step:
        seconds = warmup + duration
        offsets = (
            arrivals.uniform(offered, seconds)
            if schedule == "uniform"
            else arrivals.poisson(offered, seconds, seed + int(offered))
        )
        click.echo(f"  {offered:g}/s: {warmup:g} s warm-up, {duration:g} s recorded ...", err=True)
        step = arrivals.run_step(offered, offsets, warmup, send, workers, time.monotonic, time.sleep, timeout)
        click.echo(f"    p99 {step.ms(99):,.1f} ms, {step.counted - step.answered:,} failed", err=True)
        return step

    steps, reason = arrivals.step_up(rate, max_rate, measure, max_p99_ms, max_errors)
    uncounted = [s for s in steps if s.counted != s.scheduled]
    under_goal = [s.rate for s in steps if s.answered and s.counted == s.answered and s.ms(99) < goal_p99_ms]
    command = (
        f"python -m bench.openloop --rate {rate:g} --max-rate {max_rate:g} --max-p99-ms {max_p99_ms:g}"
        f" --max-errors {max_errors} --duration {duration:g} --warmup {warmup:g} --workers {workers}"
        f" --timeout {timeout:g} --arrivals {schedule} --seed {seed} --wallets {wallets}"
    )
    text = (
        "# Latency under a fixed arrival rate\n\n"
        f"`{command}`, {machine()}. Open loop, {schedule} arrivals; latency from each request's"
        " intended send time to its answer (HDR histogram), refusals (409, 422) counted as answers;"
        f" errors and timeouts ({timeout:g} s) apart. Stopped: {reason}.\n\n"
        + _table(steps)
        + f"\n\nHighest offered rate with p99 under {goal_p99_ms:g} ms and no failures: "
        + (f"{max(under_goal):g}/s" if under_goal else "none")
        + f".\n\nEvery request counted once: {'yes' if not uncounted else 'NO'}"
        f" ({sum(s.scheduled for s in steps):,} scheduled, {sum(s.counted for s in steps):,} counted)."
        f" Resent after a dropped keep-alive connection: {resent.value:,}.\n"
    )
    violations = events.money_violations(stack)
    text += f"\nMoney invariants afterwards: {'hold' if not violations else violations}.\n"
    click.echo(text)
    if write:
        (RESULTS / "latency.md").write_text(text)
        _plot(steps, str(RESULTS / "latency.png"))
    if uncounted or violations:
        sys.exit(1)


if __name__ == "__main__":
    main()
