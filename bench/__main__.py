"""`python -m bench [--quick]`: the benchmark suite against the running dev stack.

1. Core postings (common/'s path, no HTTP, no Firestore, no Redis) from several
   processes, side by side with a plain-SQL pgbench baseline on the same Postgres.
2. The same actions over HTTP through the functions.

Every target is a ratio of two figures measured in this run. The run exits non-zero
when any request failed other than by a business refusal (so the quick mode is a
correctness smoke test); it never judges speed.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import click

from emulators.stack import Stack


@click.command()
@click.option("--quick", is_flag=True, help="Small counts: a smoke run.")
@click.option("--duration", default=15.0, show_default=True, help="Seconds measured per scenario.")
@click.option("--core-workers", default=8, show_default=True, help="Workers for the core and pgbench runs.")
@click.option("--hot-workers", default=32, show_default=True, help="Workers for the one-treasury top-up run.")
@click.option("--http-clients", "--clients", default=16, show_default=True, help="Concurrent HTTP clients.")
@click.option("--mix-clients", default=32, show_default=True, help="Concurrent clients of the mixed workload.")
@click.option("--wallets", default=10_000, show_default=True, help="Wallets for uniform core load.")
@click.option("--profile", default="dev", show_default=True, help="Which local stack to drive (the tests use test).")
def main(
    quick: bool,
    duration: float,
    core_workers: int,
    hot_workers: int,
    http_clients: int,
    mix_clients: int,
    wallets: int,
    profile: str,
) -> None:
    stack = Stack(profile)
    if quick:
        duration, wallets = min(duration, 3.0), min(wallets, 2_000)
    # common/ reads its settings once per process: point it at the dev stack first.
    os.environ.update(stack.in_process_env())

    from bench import (
        cold_start,
        core_procs,
        erp_export,
        events,
        mixed,
        pgbench,
        pgledger,
        processes,
        report,
        runner,
        scenarios,
        setup,
        side_by_side,
        wallet_models,
    )

    # The local scheduler's ticks (an ERP export pass every 5 minutes) would land in the
    # middle of a measurement; the export is measured on its own below. make dev starts
    # it again.
    stack.stop_service("scheduler")
    before_setup = events.high_water(stack)
    data = setup.prepare(stack, wallets)
    # The seed's events (20,000 history transfers on a fresh ledger) are for no
    # consumer either: left pending, the sweeper's cold start would publish them all.
    setup.mark_events_published(stack, before_setup)
    before_core = events.high_water(stack)
    core_bodies = scenarios.bodies(data)
    uniform_transfer = next(name for name in core_bodies if name.startswith("transfer"))

    # Target 1 side by side: pgbench and the core path take turns, and the best round of
    # each counts, so a burst of noise on this shared machine cannot decide the ratio.
    rounds = 1 if quick else 2
    click.echo(f"\nCore postings vs plain SQL ({core_workers} workers, {len(data.wallets):,} wallets)", err=True)
    baselines, direct, uniform = [], [], []
    meter = processes.CpuMeter(stack)
    for round_no in range(1, rounds + 1):
        click.echo(f"  running: pgbench: plain-SQL transfer (round {round_no} of {rounds}) ...", err=True)
        baselines.append(
            meter.measure(
                f"pgbench, round {round_no}",
                lambda: pgbench.transfer_baseline(stack, data, core_workers, duration),
            )
        )
        direct.append(
            meter.measure(
                f"pgbench calling ledger.commit_posting(), round {round_no}",
                lambda: pgbench.transfer_baseline(stack, data, core_workers, duration, pgbench.DIRECT),
            )
        )
        uniform.append(
            meter.measure(
                f"core, round {round_no}",
                lambda: core_procs.run(uniform_transfer, core_workers, duration, data),
            )
        )
        click.echo(f"    pgbench {baselines[-1].throughput:,.0f}/s, core {uniform[-1].throughput:,.0f}/s", err=True)
    baseline = max(baselines, key=lambda r: r.throughput)
    server_side = max(direct, key=lambda r: r.throughput)
    # pgledger side by side (bench/side_by_side.py): its scripts and ours in alternating
    # rounds, with the Postgres CPU per posting of each and the Cloud SQL sizing from it.
    click.echo("\npgledger side by side", err=True)
    if pgledger.available():
        pgledger_runs = side_by_side.contenders(
            stack,
            data,
            core_workers,
            hot_workers,
            duration,
            core=lambda: core_procs.run(uniform_transfer, core_workers, duration, data),
        )
        side_by_side.run_rounds(stack, pgledger_runs, rounds, postings=lambda: events.high_water(stack))
        pgledger_table = side_by_side.report(pgledger_runs)
    else:  # a checkout without the anchor beside it: say so, measure the rest
        pgledger_table = f"pgledger's anchor is not at {pgledger.anchor_dir()} (set LEDGER_PGLEDGER_DIR): not run"
    click.echo(pgledger_table)
    core = [max(uniform, key=lambda r: r.throughput)]
    treasury = core_procs.run(scenarios.TOPUP, hot_workers, duration, data)
    core.append(treasury)
    for name in core_bodies:
        if name not in (uniform_transfer, scenarios.TOPUP):
            core.append(core_procs.run(name, core_workers, duration, data))
    # What group commit adds: the uniform run once more with every posting sent alone.
    alone = core_procs.run(
        uniform_transfer,
        core_workers,
        duration,
        data,
        label=f"core: {uniform_transfer}, group commit off",
        group_commit=False,
    )
    core_section = [baseline, server_side, *core, alone]
    click.echo(report.table(core_section))
    setup.mark_events_published(stack, before_core)
    group_commit = report.group_commit_table(core)
    click.echo("\nGroup commit in the core runs (warm-up included)\n" + group_commit)
    transfer_cpu = meter.table()
    click.echo("\nCPU per transfer, pgbench vs core\n" + transfer_cpu)

    http_data = dataclasses.replace(data, wallets=data.wallets[:1000])
    http_results = []
    click.echo(f"\nHTTP through the functions ({http_clients} clients)", err=True)
    for name, body in scenarios.bodies(http_data).items():
        click.echo(f"  running: {name} ...", err=True)
        http_results.append(runner.run(name, http_clients, duration, scenarios.http_worker(stack, body)))

    mix_totals: list = []
    events_before = events.high_water(stack)
    click.echo(f"  running: mixed workload ({mix_clients} clients) ...", err=True)
    mixed_result = runner.run(
        "mixed: top-up 20%, usage 60%, transfer 15%, void 5%",
        mix_clients,
        duration,
        mixed.worker(stack, http_data, mix_totals),
        probe=lambda: processes.cpu(stack),
    )
    http_results.append(mixed_result)
    event_counts = events.summary(stack, events_before)
    event_table = events.table(*event_counts)
    # The ceiling of this machine for target 3: an empty function served the same way,
    # under the same clients, does no work at all.
    click.echo(f"  running: empty function, the HTTP ceiling ({mix_clients} clients) ...", err=True)
    with cold_start.serving("empty", {**os.environ, **stack.env()}) as empty_url:
        ceiling = runner.run(
            "empty function (no work: the HTTP ceiling)", mix_clients, duration, scenarios.empty_worker(empty_url)
        )
    http_results.append(ceiling)
    click.echo(report.table(http_results))
    from bench.http_client import resent

    spans = mixed.spans_table(mix_totals) + (
        f"\n\nRequests sent again with the same Idempotency-Key after the server closed an idle keep-alive"
        f" connection before answering, over all HTTP runs: {resent.value:,}."
    )
    click.echo("\nWhere a mixed request's time goes (Server-Timing spans)\n" + spans)
    click.echo("\nEvents of the mixed run (posting to Pub/Sub acknowledgement)\n" + event_table)
    cpu = processes.cpu_table(*mixed_result.probes, mixed_result.requests, mixed_result.elapsed_s)
    click.echo("\nWhere the machine's CPU goes in the mixed run\n" + cpu)

    repeats = 1 if quick else 3
    # the quick mode checks the tool, not every function: an HTTP money function, the
    # reading one and a pushed publisher (make bench-smoke starts each one)
    cold_names = ("topup", "wallets", "outbox_sweeper") if quick else cold_start.FUNCTIONS
    click.echo(f"\nCold starts (median of {repeats})", err=True)
    voids = setup.voidable_transactions(stack, data.wallets[0], repeats)
    if not quick:  # the quick mode checks the tool; a full run measures starts, not backlogs
        cold_start.catch_up_ticks(stack)
    cold = cold_start.run(
        stack.function_env,
        data.wallets[0],
        setup.ASSET,
        voids,
        repeats,
        setup.empty_erp_stream(stack),
        setup.tree_member(stack, funds=1_000),
        cold_start.yardstick_settings(stack),
        names=cold_names,
        pending_event=lambda: setup.voidable_transactions(stack, data.wallets[0], 1),
    )
    click.echo(report.cold_table(cold))

    click.echo(f"\nWallet models ({core_workers} workers, through common/'s posting path)", err=True)
    models, model_results = wallet_models.run(stack, core_workers, duration)
    click.echo(models)

    erp_events = 10_000 if quick else 1_000_000
    click.echo(f"\nERP export of {erp_events:,} ledger events", err=True)
    erp_figures = erp_export.run(stack, erp_events)
    erp_table = erp_export.table(erp_figures)
    click.echo(erp_table)

    targets = [
        ("1. core transfers / pgbench transfers", core[0].throughput / baseline.throughput, 1.0),
        (
            "1. (server side) pgbench calling ledger.commit_posting() / pgbench transfers",
            server_side.throughput / baseline.throughput,
            1.0,
        ),
        (
            f"2. one-treasury top-ups ({hot_workers} workers) / uniform core transfers",
            treasury.throughput / core[0].throughput,
            0.9,
        ),
        ("3. mixed end to end / uniform core transfers", mixed_result.throughput / core[0].throughput, 0.5),
        (
            "3. (ceiling) empty function, same clients / uniform core transfers",
            ceiling.throughput / core[0].throughput,
            0.5,
        ),
        *[(f"4. cold start of {name} / its own yardstick", ms / yard, -1.15) for name, ms, yard in cold[1:]],
        (
            "ERP export (issue 4): seconds per 1,000,000 events / 120 s",
            erp_figures["seconds"] * 1_000_000 / erp_figures["events"] / 120,
            -1.0,
        ),
    ]
    click.echo("\n" + report.targets_table(targets))
    path = report.write(
        [("Core postings vs plain SQL", core_section), ("HTTP through the functions", http_results)],
        targets,
        duration,
        quick,
        extra=[
            ("Group commit in the core runs (warm-up included)", group_commit),
            ("CPU per transfer, pgbench vs core (each round, warm-up included)", transfer_cpu),
            ("pgledger side by side, Postgres CPU per posting, Cloud SQL sizing", pgledger_table),
            ("Where a mixed request's time goes (Server-Timing spans)", spans),
            ("Events of the mixed run (posting to Pub/Sub acknowledgement, off the request path)", event_table),
            ("Where the machine's CPU goes in the mixed run", cpu),
            (f"Cold starts (median of {repeats})", report.cold_table(cold)),
            (f"Wallet models ({core_workers} workers, through common/'s posting path)", models),
            (f"ERP export of {erp_events:,} ledger events (one pass, batches of 1,000)", erp_table),
        ],
    )
    click.echo(f"\nwritten to {path}")
    runs = [*core_section, *http_results, *model_results]
    failures = [(r.scenario, r.error_samples) for r in runs if r.outcomes["error"]]
    if event_counts[1]:
        failures.append(("events", [f"{event_counts[1]} events of the mixed run were never published"]))
    if failures:
        click.echo(f"unexpected errors: {failures}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
