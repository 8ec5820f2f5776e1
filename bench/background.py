"""`make bench-background` (`python -m bench.background`): what each background job does to
live latency, unpaced and paced (issue 20).

On the running dev stack, with its scheduler stopped for the run (no tick may start a
job behind the measurement's back; started again at the end), for each job of `--jobs`,
each rate of `--rates` and each pacing of `--modes` (LEDGER_JOB_PACING: `off` is the
"before", `adaptive` the default):
1. the job's backlog is there (bench/background_jobs.py);
2. the end-to-end HTTP mix (bench/mixed.py: top-up, usage, transfer, void) runs open loop
   at the rate (bench/arrivals.py, latency from each request's intended send time, HDR
   histograms): a warm-up, then `--quiet` seconds of traffic alone;
3. the job starts as its operator starts it (child processes, the stack's environment),
   and the traffic runs on until the job has cleared its backlog.
Each request counts for the window its intended send time falls in. Per run: the job's
time to clear and items/s; live p50/p95/p99/p99.9/max and errors, quiet and during the
job; the goal: during the job, p99 at most 2x quiet's and no request over 700 ms.

Prints a table per rate; with `--write` also bench/results/background.md. Then the money
invariants must hold. Exits 1 if a job failed or did not clear, or an invariant is broken;
latency over the goal is a result, not a failure.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from bench import arrivals, background_jobs
from bench.background_jobs import JOBS, Ledger, Outcome, Sizes
from bench.background_windows import Row, Windows, table
from bench.report import RESULTS, machine
from emulators.stack import Stack

MODES = ("off", "adaptive")


def run_job(ledger: Ledger, job: background_jobs.Job, rate: float, mode: str, index: int, send, options: dict) -> Row:  # noqa: ANN001 - send: bench/mixed.py's open-loop sender
    """One run: seed, warm-up, quiet window, the job under traffic until it exits."""
    echo = lambda text: click.echo(text, err=True)  # noqa: E731
    seeded_at = time.monotonic()
    backlog = job.seed(ledger, index)
    echo(f"  {job.name} at {rate:g}/s, pacing {mode}: backlog {backlog:,} ({time.monotonic() - seeded_at:,.0f} s)")
    # the seed's dirty pages written out now, not under the quiet window
    ledger.superuser("CHECKPOINT")
    time.sleep(options["settle"])
    wait_until_idle(echo)
    from bench.events import high_water
    from bench.setup import mark_events_published

    before = high_water(ledger.stack)
    warmup, quiet = options["warmup"], options["quiet"]
    windows = Windows(rate, quiet_s=quiet)
    offsets = arrivals.uniform(rate, warmup + quiet + options["job_timeout"])
    finished = threading.Event()
    result: dict[str, object] = {}

    def operate() -> None:
        while windows.measured_from is None:
            time.sleep(0.01)
        time.sleep(max(0.0, windows.measured_from + quiet - time.monotonic()))
        started = time.monotonic()
        windows.mark(started=started - windows.measured_from)
        try:
            result["outcome"] = job.run(ledger, mode, index)
        except Exception as error:  # noqa: BLE001 - a failed job is a result of the run, reported
            result["outcome"] = Outcome(0, False, f"{type(error).__name__}: {error}")
        ended = time.monotonic()
        windows.mark(ended=ended - windows.measured_from)
        result["seconds"] = ended - started
        finished.set()

    operator = threading.Thread(target=operate, daemon=True)
    operator.start()
    arrivals.run_step(
        rate,
        offsets,
        warmup,
        send,
        options["workers"],
        time.monotonic,
        time.sleep,
        options["timeout"],
        windows,
        until=finished.is_set,
    )
    operator.join()
    outcome = result["outcome"]
    assert isinstance(outcome, Outcome)
    job.undo(ledger)
    settled = mark_events_published(ledger.stack, before)  # the job's events left for no sweeper
    seconds = float(result["seconds"])  # type: ignore[arg-type]
    echo(
        f"    {outcome.items:,} items in {seconds:,.1f} s; live p99 {windows.quiet.ms(99):,.1f} ms quiet,"
        f" {windows.during.ms(99):,.1f} ms during, max {windows.during.max_ms:,.0f} ms"
        + (f"; FAILED: {outcome.note}" if not outcome.ok else "")
        + (f" ({settled:,} events left unpublished marked published)" if settled else "")
        + (f"; pacing {json.dumps(outcome.pacing)}" if outcome.pacing else "")
    )
    row = Row(job.name, mode, backlog, seconds if outcome.ok else None, outcome.items, windows, outcome.note)
    # the run's two table rows now: a long invocation stopped early keeps what it measured
    echo("\n".join("    " + line for line in table([row]).splitlines()[2:]))
    return row


@click.command()
@click.option("--rates", default="70,140", show_default=True, help="Offered live rates, requests/s, comma-separated.")
@click.option("--jobs", "chosen", default=",".join(JOBS), show_default=True, help="Jobs to run, in this order.")
@click.option("--modes", default=",".join(MODES), show_default=True, help="LEDGER_JOB_PACING of each run.")
@click.option(
    "--events", default=1_000_000, show_default=True, help="Ledger transactions for export, chain, reconcile."
)
@click.option("--sweep", default=100_000, show_default=True, help="Pending events for the outbox sweep.")
@click.option("--lots", default=100_000, show_default=True, help="Due lots for lot expiry.")
@click.option("--wallets", default=200_000, show_default=True, help="Wallets the dormant sweep scans.")
@click.option("--dormant", default=20_000, show_default=True, help="Of them dormant and funded.")
@click.option("--rows", default=100_000, show_default=True, help="Rows of the legacy file imported.")
@click.option("--quiet", default=60.0, show_default=True, help="Seconds of traffic alone before each job.")
@click.option("--settle", default=10.0, show_default=True, help="Seconds of rest after a seed, before the traffic.")
@click.option("--warmup", default=5.0, show_default=True, help="Seconds of traffic, unrecorded, before that.")
@click.option("--job-timeout", default=3600.0, show_default=True, help="Longest the traffic waits for a job, seconds.")
@click.option("--workers", default=64, show_default=True, help="Bounded pool of sending threads.")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds before a request counts as timed out.")
@click.option("--http-wallets", default=1_000, show_default=True, help="Wallets the live traffic moves money among.")
@click.option("--profile", default="dev", show_default=True, help="Which local stack (the smoke test uses test).")
@click.option("--write", is_flag=True, help="Write bench/results/background.md.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the report here instead.")
def main(**options) -> None:  # noqa: ANN003 - click's options, passed on whole
    stack = Stack(options["profile"])
    os.environ.update(stack.in_process_env())
    from bench import events, mixed, setup
    from bench.erp_export import totals_receiver

    rates = [float(r) for r in options["rates"].split(",") if r.strip()]
    modes = [m.strip() for m in options["modes"].split(",") if m.strip()]
    chosen = [j.strip() for j in options["chosen"].split(",") if j.strip()]
    known = background_jobs.jobs()
    if unknown := sorted(set(chosen) - set(known)) + sorted(set(modes) - {"off", "fixed", "adaptive"}):
        raise click.BadParameter(f"unknown {unknown}: jobs are {', '.join(JOBS)}; modes off, fixed, adaptive")
    sizes = Sizes(*(options[k] for k in ("events", "sweep", "lots", "wallets", "dormant", "rows")))
    echo = lambda text: click.echo(text, err=True)  # noqa: E731
    began = time.monotonic()
    stack.stop_service("scheduler")  # no tick may run a job during a measurement
    try:
        wait_for_ticks(stack, echo)
        before_setup = events.high_water(stack)
        data = setup.prepare(stack, options["http_wallets"])
        setup.mark_events_published(stack, before_setup)  # the setup's events are for no consumer
        send = mixed.open_loop_sender(stack, data, options["workers"], options["timeout"])
        with totals_receiver(stack) as port, tempfile.TemporaryDirectory(prefix="bench-background-") as workdir:
            ledger = Ledger(stack, sizes, receiver_url=f"http://127.0.0.1:{port}", workdir=Path(workdir))
            background_jobs.TIMEOUT_S = options["job_timeout"]
            needs_seed = {"export", "chain", "reconcile", "sweep"} & set(chosen)
            catch_up = bool({"chain", "reconcile"} & set(chosen))
            seeding = background_jobs.prepare(ledger, len(rates) * len(modes), echo, catch_up) if needs_seed else {}
            rows: dict[float, list[Row]] = {rate: [] for rate in rates}
            runs = 0
            for name in chosen:  # jobs outside, so one job's postings are in no later export's backlog
                for rate in rates:
                    for mode in modes:
                        rows[rate].append(run_job(ledger, known[name], rate, mode, runs, send, options))
                        runs += 1
    finally:
        if options["profile"] == "dev":
            stack.start_scheduler()
    violations = events.money_violations(stack)
    minutes = (time.monotonic() - began) / 60
    command = "python -m bench.background " + " ".join(
        f"--{k.replace('_', '-')} {options[k]}"
        for k in ("rates", "chosen", "modes", "events", "sweep", "lots", "wallets", "dormant", "rows", "quiet")
    ).replace("--chosen", "--jobs")
    text = report(rows, seeding, command, minutes, violations, options["profile"])
    click.echo(text)
    out = options["out"] or (RESULTS / "background.md" if options["write"] else None)
    if out:
        Path(out).write_text(text)
    failed = [row for rate_rows in rows.values() for row in rate_rows if not row.cleared]
    if failed or violations:
        sys.exit(1)


TICKED = ("dormancy", "erp_export", "ledger_reconcile", "lot_expiry", "outbox_sweeper")


def wait_for_ticks(stack: Stack, echo, quiet_s: float = 30.0, limit_s: float = 600.0) -> None:  # noqa: ANN001
    """Until no scheduled job function has been at work in the database for `quiet_s` (a
    paced job rests between batches, idle, for up to 19 times a batch): a
    tick published before the scheduler stopped is still delivered (and retried) after."""
    from bench.events import owner_sql
    from emulators.stack import FUNCTIONS

    users = sorted({stack.login_env(FUNCTIONS[name].database_login)["LEDGER_DB_USER"] for name in TICKED})
    began = last_busy = time.monotonic()
    while time.monotonic() - last_busy < quiet_s and time.monotonic() - began < limit_s:
        busy = owner_sql(
            stack,
            "SELECT count(*) FROM pg_stat_activity WHERE usename = ANY (CAST(:u AS text[])) AND state <> 'idle'",
            u=users,
        )[0][0]
        if busy:
            last_busy = time.monotonic()
        time.sleep(0.5)
    if time.monotonic() - began > quiet_s + 1:
        echo(f"  waited {time.monotonic() - began:,.0f} s for a scheduled job's tick to finish")


def cpu_times() -> tuple[int, int]:
    """The machine's (busy or waiting on disk, total) CPU time so far, in clock ticks (/proc/stat's first line)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # iowait counts as busy: a checkpoint's flush stalls requests while the CPU is idle
    return sum(fields) - fields[3], sum(fields)


def wait_until_idle(echo, busy_below: float = 0.15, sample_s: float = 2.0, limit_s: float = 900.0) -> None:  # noqa: ANN001
    """Until the machine's CPU is under `busy_below` busy for two samples running: what
    the last run set going (a sweep's events consumed by the functions, autovacuum after
    a bulk job) ends before the next quiet window, or that window is not quiet."""
    began, calm = time.monotonic(), 0
    busy, total = cpu_times()
    while calm < 2 and time.monotonic() - began < limit_s:
        time.sleep(sample_s)
        now_busy, now_total = cpu_times()
        share = (now_busy - busy) / max(1, now_total - total)
        busy, total = now_busy, now_total
        calm = calm + 1 if share < busy_below else 0
    if time.monotonic() - began > 2 * sample_s + 1:
        echo(f"  waited {time.monotonic() - began:,.0f} s for the machine to be idle (CPU under {busy_below:.0%})")


def report(
    rows: dict[float, list[Row]],
    seeding: dict[str, float],
    command: str,
    minutes: float,
    violations,
    profile: str,  # noqa: ANN001
) -> str:
    parts = [
        "# Background jobs beside live traffic, unpaced and paced",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}; `{command}`"
        f" on the {profile} stack ({minutes:,.0f} min).",
        "",
        "Open-loop HTTP mix (top-up 20 %, usage 60 %, transfer 15 %, void 5 %), latency from each request's intended"
        " send time. Per job run: the quiet window before it (its backlog in place), then the requests whose intended"
        " send time falls inside the job's run, from its start until it had cleared its backlog. Pacing: `off` never"
        " rests (the before), `adaptive` the default (common/pacing.py). Goal: during the job, live p99 at most 2x"
        " quiet's and no live request over 700 ms. The scheduler was stopped, so no tick ran a job; before each quiet"
        " window the machine was idle (CPU busy or waiting on disk under 15 % for 4 s). Items: what the"
        " job handled, by its own report (export: events; chain: links; reconcile: transactions passed; sweep: events"
        " published; expire: lots; dormancy: wallets swept; migrate: rows); for export, chain and reconcile the live"
        " traffic's postings since the seed are in its backlog too, so items exceed the backlog.",
    ]
    for rate, rate_rows in rows.items():
        parts += ["", f"## {rate:g} requests/s", "", table(rate_rows)]
    if seeding:
        parts += ["", "Seeding (not counted): " + ", ".join(f"{k} {v:,.0f} s" for k, v in seeding.items()) + "."]
    parts += ["", f"Money invariants afterwards: {'hold' if not violations else violations}."]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    main()
