"""`make bench-bulk`: the bulk jobs of docs/migrations.md and docs/dormancy.md at size,
and what live traffic sees while they run.

On the running dev stack:
1. **Import.** A legacy file of `--rows` opening balances (1,000,000 by default: one
   row in ten a lot with an expiry, one owner in twenty with two rows) goes through
   `python -m common.migrate import`, run as the operator runs it. Sampled every half
   second: rows posted (the database's insert counter of ledger.transactions) and the
   command's resident memory, plotted over time. It must exit 0 with its report
   reconciled.
2. **Dormant sweep.** `--wallets` customer wallets of a fresh asset, `--dormant` of them
   idle past a sweeping policy's inactivity and holding a balance, a tenth as many in
   their warning period. `python -m common.dormancy run` is run until a run finds
   nothing to do; then once more, which must sweep nothing.
3. **Live traffic.** The end-to-end HTTP mix (bench/mixed.py: top-up, usage, transfer,
   void) for `--live-seconds`, closed loop with `--clients` clients: alone, during an
   import, and during a dormant sweep. Throughput and p95, side by side.

Then `python -m common.reconcile` must pass. Results: bench/results/bulk.md and
bench/results/bulk.png. Nothing here is asserted in a test; the smoke test runs it small.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import string
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pg8000.native

from bench import mixed, processes, runner, setup
from bench.report import RESULTS, machine
from bench.runner import Result
from bench.usage_intake import reconcile
from emulators.stack import REPO, Stack


@dataclass
class Sampled:
    """A command run with its progress and memory sampled over time."""

    label: str
    seconds: float = 0.0
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    times: list[float] = field(default_factory=list)
    done: list[int] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)

    @property
    def peak_rss_mib(self) -> float:
        return max(self.rss_mib, default=0.0)


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _inserted(con: pg8000.native.Connection) -> int:
    """Rows ever inserted into ledger.transactions (the statistics counter: cheap to read
    every half second, unlike counting a million rows)."""
    con.run("SELECT pg_stat_clear_snapshot()")
    return int(con.run("SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = 'ledger.transactions'::regclass")[0][0])


def run_sampled(stack: Stack, label: str, args: list[str], env: dict[str, str] | None = None) -> Sampled:
    sampled = Sampled(label)
    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        first = _inserted(con)
        began = time.monotonic()
        child = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env={**os.environ, **stack.in_process_env(), **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        output: dict[str, str] = {}
        reader = threading.Thread(
            target=lambda: output.update(zip(("out", "err"), child.communicate(), strict=True)), daemon=True
        )
        reader.start()
        while child.poll() is None:
            rss = _rss_mib(child.pid)
            if rss is not None:
                sampled.times.append(time.monotonic() - began)
                sampled.done.append(_inserted(con) - first)
                sampled.rss_mib.append(rss)
            time.sleep(0.5)
        reader.join()
        sampled.seconds = time.monotonic() - began
        time.sleep(1.0)  # the last backend's statistics reach the counter
        sampled.times.append(sampled.seconds)
        sampled.done.append(_inserted(con) - first)
        sampled.rss_mib.append(sampled.rss_mib[-1] if sampled.rss_mib else 0.0)
    finally:
        con.close()
    sampled.exit_code = child.returncode
    sampled.stdout, sampled.stderr = output.get("out", ""), output.get("err", "")
    return sampled


def last_transaction(stack: Stack) -> int:
    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        return int(con.run("SELECT coalesce(max(id), 0) FROM ledger.transactions")[0][0])
    finally:
        con.close()


def settle_outbox(stack: Stack, after_id: int) -> int:
    """Mark the still unpublished ledger events of the bench's postings (after
    `after_id`) as published; how many there were. The outbox sweeper publishes a bulk
    job's events after it (about 300 a second against the Pub/Sub emulator on this
    machine: an hour for a million); left pending, that catch-up would run under the
    next measurement. A backlog's catch-up beside live traffic is measured on its own
    (issue 20), as bench/setup.py's core runs do with theirs."""
    from bench.setup import mark_events_published

    return mark_events_published(stack, after_id)


# --- the legacy file ---------------------------------------------------------------


def write_legacy_file(path: Path, rows: int, asset: str, prefix: str) -> int:
    """`rows` opening balances; returns their total."""
    rng = random.Random(16)
    expiry = (datetime.now(UTC) + timedelta(days=400)).replace(microsecond=0).isoformat()
    total = 0
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["row_id", "owner", "asset", "amount", "model", "parent", "lot_expires_at"])
        for i in range(rows):
            owner = i - 1 if i % 20 == 1 else i  # one owner in twenty has two rows
            amount = rng.randint(1, 1_000_000)
            total += amount
            writer.writerow(
                [f"r{i}", f"{prefix}-{owner}", asset, amount, "personal", "", expiry if i % 10 == 3 else ""]
            )
    return total


# --- dormancy ------------------------------------------------------------------------


def seed_dormancy(stack: Stack, asset: str, wallets: int, dormant: int) -> None:
    """`wallets` wallets of `asset`; the first `dormant` funded and idle for 400 days, a
    tenth as many more idle for 350 (in a 365-day policy's 30-day warning); a policy that
    sweeps. Written as the owner: the benchmark's data, not a path the ledger offers."""
    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        con.run("SELECT ledger.create_asset(:a, CAST(0 AS smallint), 'dormancy benchmark')", a=asset)
        con.run(
            "INSERT INTO ledger.wallets (owner_id, asset_code) SELECT 'dormancy-bench-' || g, :a"
            " FROM generate_series(1, :n) g",
            a=asset,
            n=wallets,
        )
        funding = con.run(
            "SELECT id FROM ledger.wallets WHERE kind = 'system' AND system_role = 'funding' AND asset_code = :a",
            a=asset,
        )[0][0]
        ids = [
            r[0]
            for r in con.run(
                "SELECT id FROM ledger.wallets WHERE asset_code = :a AND kind = 'customer' ORDER BY id", a=asset
            )
        ]
        idle, warned = ids[:dormant], ids[dormant : dormant + dormant // 10]
        for start in range(0, len(idle), 10_000):
            con.run(
                "SELECT ledger.commit_posting('dormancy-bench-' || w, 'bench-setup', 'topup', :a, 100 + w % 900, w,"
                " NULL, ARRAY[:f, w], ARRAY[-(100 + w % 900), 100 + w % 900], 'dormancy-bench-' || w)"
                " FROM unnest(CAST(:ws AS bigint[])) AS w",
                a=asset,
                f=funding,
                ws=idle[start : start + 10_000],
            )
        con.run(
            "UPDATE ledger.wallets SET last_activity_at = now() - interval '400 days'"
            " WHERE id = ANY (CAST(:ws AS bigint[]))",
            ws=idle,
        )
        con.run(
            "UPDATE ledger.wallets SET last_activity_at = now() - interval '350 days'"
            " WHERE id = ANY (CAST(:ws AS bigint[]))",
            ws=warned,
        )
        con.run(
            "INSERT INTO ledger.dormancy_policies (asset_code, model, inactivity, warning, action)"
            " VALUES (:a, 'personal', interval '365 days', interval '30 days', 'sweep')",
            a=asset,
        )
        con.run("ANALYZE ledger.wallets")
    finally:
        con.close()


def dormancy_runs(stack: Stack, max_runs: int = 50) -> tuple[list[Sampled], dict[str, int]]:
    """`python -m common.dormancy run` until a run sweeps and warns nobody; the summed
    summary of the runs that did something."""
    runs: list[Sampled] = []
    totals: dict[str, int] = {}
    for number in range(max_runs):
        run = run_sampled(stack, f"dormancy run {number + 1}", ["-m", "common.dormancy", "run"])
        if run.exit_code != 0:
            raise SystemExit(f"dormancy run failed ({run.exit_code}): {run.stderr[-2000:]}")
        summary = json.loads(run.stderr.strip().splitlines()[-1])
        runs.append(run)
        if not any(summary.get(k) for k in ("warned", "marked", "swept")):
            break
        for name, value in summary.items():
            if isinstance(value, int):
                totals[name] = totals.get(name, 0) + value
    return runs, totals


# --- live traffic --------------------------------------------------------------------


def live_traffic(stack: Stack, data: setup.BenchData, label: str, clients: int, seconds: float) -> Result:
    totals: list[mixed.SpanTotals] = []
    return runner.run(label, clients, seconds, mixed.worker(stack, data, totals), warmup_s=1.0)


def during(job: Callable[[], Any], measure: Callable[[], Result], lead_s: float = 3.0) -> tuple[Result, Any]:
    """`measure` while `job` runs (started `lead_s` earlier, so the job is in its stride)."""
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.update(value=job()), daemon=True)
    thread.start()
    time.sleep(lead_s)
    result = measure()
    busy = thread.is_alive()
    thread.join()
    result.scenario += "" if busy else " (the job ended first)"
    return result, outcome.get("value")


# --- report -----------------------------------------------------------------------------


def plot(import_run: Sampled, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times, done = import_run.times, import_run.done
    rates = [0.0] + [
        (done[i] - done[i - 1]) / (times[i] - times[i - 1]) if times[i] > times[i - 1] else 0.0
        for i in range(1, len(times))
    ]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    top.plot(times, rates, linewidth=0.8)
    top.set_ylabel("rows posted / s")
    top.set_title(f"{import_run.label}: rows/s and the command's memory over time")
    bottom.plot(times, import_run.rss_mib, color="tab:orange")
    bottom.set_ylabel("RSS, MiB")
    bottom.set_xlabel("seconds")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def live_table(results: list[Result], quiet: Result) -> str:
    rows = [
        "| live traffic | clients | requests | errors | actions/s | vs alone | p50 ms | p95 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = r.throughput / quiet.throughput if quiet.throughput else 0.0
        p50, p95, p99 = (f"{r.percentile(p) or 0:.1f}" for p in (50, 95, 99))
        rows.append(
            f"| {r.scenario} | {r.clients} | {r.requests:,} | {r.outcomes[runner.ERROR]} | {r.throughput:,.0f}"
            f" | {ratio:.2f}x | {p50} | {p95} | {p99} |"
        )
    return "\n".join(rows)


def _asset_code() -> str:
    return "B" + "".join(random.choices(string.ascii_uppercase, k=5))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("ROWS", 1_000_000)))
    parser.add_argument("--workers", type=int, default=3, help="the import's lanes")
    parser.add_argument("--wallets", type=int, default=1_000_000, help="wallets the dormant sweep scans")
    parser.add_argument("--dormant", type=int, default=100_000)
    parser.add_argument("--live-rows", type=int, default=60_000, help="rows imported while live traffic runs")
    parser.add_argument("--live-seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--http-wallets", type=int, default=1000)
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results alone")
    parser.add_argument("--profile", default="dev", help="the stack: dev, or test (the smoke test)")
    args = parser.parse_args(argv)

    stack = Stack(args.profile)
    os.environ.update(stack.env())
    data = setup.prepare(stack, args.http_wallets)
    asset = _asset_code()
    tag = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix="bench-bulk-"))
    first_id = last_transaction(stack)  # the bench's own events are those after it
    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        con.run("SELECT ledger.create_asset(:a, CAST(0 AS smallint), 'migration benchmark')", a=asset)
    finally:
        con.close()

    # 1. the import, alone
    legacy = workdir / "legacy.csv"
    source_total = write_legacy_file(legacy, args.rows, asset, f"legacy-{tag}")
    migration_id = f"bench-{tag}"
    import_command = ["-m", "common.migrate", "import", str(legacy), "--migration-id", migration_id]
    cpu_before = processes.cpu(stack)
    imported = run_sampled(stack, f"import of {args.rows:,} rows", [*import_command, "--workers", str(args.workers)])
    # where the machine's CPU went, per row ("load client": the import command itself)
    import_cpu = processes.cpu_table(cpu_before, processes.cpu(stack), args.rows, imported.seconds)
    if imported.exit_code != 0:
        raise SystemExit(f"the import failed ({imported.exit_code}): {imported.stderr[-2000:]}")
    report = json.loads(imported.stdout)
    ledger_total = sum(t["amount"] for t in report["ledger"])
    if not report["ok"] or ledger_total != source_total:
        raise SystemExit(f"the import does not reconcile: {report}")

    # 2. live traffic alone, during an import, during a dormant sweep
    measure = lambda label: lambda: live_traffic(stack, data, label, args.clients, args.live_seconds)  # noqa: E731
    settled = {"import": settle_outbox(stack, first_id)}
    quiet = measure("alone")()
    live_file = workdir / "live.csv"
    write_legacy_file(live_file, args.live_rows, asset, f"live-{tag}")
    live_runs: list[Result] = [quiet]
    for workers in sorted({1, args.workers}):
        live_id = f"bench-live-{tag}-{workers}"
        command = ["-m", "common.migrate", "import", str(live_file), "--migration-id", live_id]
        result, live_import = during(
            lambda command=command, workers=workers: run_sampled(
                stack, "live import", [*command, "--workers", str(workers)]
            ),
            measure(f"during an import, {workers} lane{'s' if workers > 1 else ''}"),
        )
        live_runs.append(result)
        if live_import.exit_code != 0:
            raise SystemExit(f"the import under live traffic failed: {live_import.stderr[-2000:]}")
        settled[f"import, {workers} lanes"] = settle_outbox(stack, first_id)

    seed_began = time.monotonic()
    dormant_asset = _asset_code()
    seed_dormancy(stack, dormant_asset, args.wallets, args.dormant)
    seeded_s = time.monotonic() - seed_began
    settled["dormancy seeding"] = settle_outbox(stack, first_id)
    cpu_before = processes.cpu(stack)
    (result, (runs, totals)) = during(lambda: dormancy_runs(stack), measure("during a dormant sweep"))
    sweep_cpu = processes.cpu_table(
        cpu_before, processes.cpu(stack), totals.get("swept", 0), sum(r.seconds for r in runs)
    )
    settled["dormant sweeps"] = settle_outbox(stack, first_id)
    live_runs.append(result)
    sweep_s = sum(r.seconds for r in runs)
    again = run_sampled(stack, "dormancy again", ["-m", "common.dormancy", "run"])
    again_summary = json.loads(again.stderr.strip().splitlines()[-1])
    reconciled, reconciliation = reconcile(stack)

    rows_per_s = args.rows / imported.seconds
    lines = [
        "# Bulk jobs: a mass import and a dormant sweep, with live traffic",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}; `make bench-bulk` (bench/bulk.py) on the dev stack.",
        "",
        "## Import (`python -m common.migrate import`)",
        "",
        "| rows | lanes | seconds | rows/s | goal: 1,000,000 rows in 3 min | peak memory, MiB | reconciled |",
        "|---:|---:|---:|---:|---|---:|---|",
        f"| {args.rows:,} | {args.workers} | {imported.seconds:,.0f} | {rows_per_s:,.0f}"
        f" | {'met' if rows_per_s >= 1_000_000 / 180 else 'NOT met'} ({1_000_000 / rows_per_s / 60:,.1f} min"
        f" for 1,000,000) | {imported.peak_rss_mib:,.0f}"
        f" | {'yes' if report['ok'] else 'NO'} ({ledger_total:,} of {source_total:,}) |",
        "",
        "![rows/s and memory over time](bulk.png)",
        "",
        "Where the CPU went during the import (per row; the functions and emulators publish each",
        "posting's ledger event as they would in Google Cloud, on the same two cores here):",
        "",
        import_cpu.replace("CPU ms per action", "CPU ms per row"),
        "",
        "## Dormant sweep (`python -m common.dormancy run`, repeated until nothing is due)",
        "",
        "| wallets | dormant | runs | seconds | wallets due/s | swept | swept amount | warned | busy | failed"
        " | a run after | seed floor (10,000 / 15 min) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        f"| {args.wallets:,} | {args.dormant:,} | {len(runs)} | {sweep_s:,.0f}"
        f" | {(totals.get('scanned', 0)) / sweep_s if sweep_s else 0:,.0f}"
        f" | {totals.get('swept', 0):,} | {totals.get('swept_amount', 0):,} | {totals.get('warned', 0):,}"
        f" | {totals.get('busy', 0):,} | {totals.get('failed', 0):,}"
        f" | swept {again_summary.get('swept', 0)}, warned {again_summary.get('warned', 0)}"
        f" | {totals.get('swept', 0) / sweep_s / (10_000 / 900) if sweep_s else 0:,.0f}x |",
        "",
        f"Seeding the wallets took {seeded_s:,.0f} s (not counted). Where the CPU went during the runs (per wallet"
        " swept; the live traffic's share included, as it ran beside them):",
        "",
        sweep_cpu.replace("CPU ms per action", "CPU ms per wallet swept"),
        "",
        "## Live traffic (HTTP mix, closed loop) alone and during each job",
        "",
        "A job's own events are published by the outbox sweeper while it runs, as in Google Cloud. What was still",
        "unpublished when a job ended was marked published before the next measurement, so that one job's",
        "catch-up does not run under the next (events so marked: "
        + ", ".join(f"{job} {count:,}" for job, count in settled.items())
        + "). The scheduled ERP export passes run as they would.",
        "",
        live_table(live_runs, quiet),
        "",
        f"`python -m common.reconcile` afterwards: {reconciliation}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        (RESULTS / "bulk.md").write_text(text)
        plot(imported, RESULTS / "bulk.png")
    if not reconciled or again_summary.get("swept") or totals.get("failed"):
        raise SystemExit("the ledger does not reconcile, or a second sweep found work")


if __name__ == "__main__":
    main()
