"""The ERP export benchmark: N ledger transactions exported to an ERP receiver, with the
exporter's throughput and memory.

Setup writes N transactions of an asset of its own (top-ups, usage, bonuses and
transfers among 1,000 wallets) straight into the ledger as its owner, in a few large
statements: the same tables, triggers and constraints as any posting, at bulk speed.
Their events are marked published, since no Pub/Sub consumer is meant to see them.
The export then runs in a child process, as the erp_export function would (one pass
until caught up, batches of LEDGER_ERP_BATCH_EVENTS), against a receiver that keeps
totals only; the child samples its own memory after every batch.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pg8000.native

from emulators.stack import REPO, Stack, port_open, wait_for

ASSET = "ERPBENCH"
WALLETS = 1_000
CHUNK = 250_000


def seed(stack: Stack, count: int) -> None:
    """`count` balanced transactions after everything the ledger holds now."""
    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        if not con.run("SELECT 1 FROM ledger.assets WHERE code = :a", a=ASSET):
            con.run("SELECT ledger.create_asset(:a, CAST(2 AS smallint), 'ERP export benchmark')", a=ASSET)
        roles = dict(
            con.run("SELECT system_role, id FROM ledger.wallets WHERE kind = 'system' AND asset_code = :a", a=ASSET)
        )
        wallets = [
            row[0]
            for row in con.run(
                "SELECT id FROM ledger.wallets WHERE asset_code = :a AND kind = 'customer' ORDER BY id", a=ASSET
            )
        ]
        if len(wallets) < WALLETS:
            wallets += [
                row[0]
                for row in con.run(
                    "INSERT INTO ledger.wallets (owner_id, asset_code, model)"
                    " SELECT 'erpbench-' || g, :a, (ARRAY['personal', 'enterprise', 'reseller'])[1 + g % 3]"
                    " FROM generate_series(1, :n) g RETURNING id",
                    a=ASSET,
                    n=WALLETS - len(wallets),
                )
            ]
        first, run = wallets[0], uuid.uuid4().hex[:8]
        done = 0
        while done < count:
            size = min(CHUNK, count - done)
            con.run("BEGIN")
            # this chunk's database transaction: what it creates is found through the
            # (created_xact, id) index, as the export reads it
            xact = con.run("SELECT pg_current_xact_id()::text")[0][0]
            # g % 4: 0 top-up (funding -> w), 1 bonus (promotion -> w), 2 usage (w -> revenue),
            # 3 transfer (w -> w + 1). Every wallet gains at least as often as it pays.
            con.run(
                """
                CREATE TEMP TABLE seeded ON COMMIT DROP AS
                SELECT g, g % 4 AS kind, CAST(:first AS bigint) + (g / 4) % :n AS w,
                       CAST(:first AS bigint) + (g / 4 + 1) % :n AS other
                  FROM generate_series(CAST(:from AS bigint), CAST(:to AS bigint)) g
                """,
                first=first,
                n=WALLETS,
                **{"from": done, "to": done + size - 1},
            )
            con.run(
                """
                INSERT INTO ledger.transactions (idempotency_key, request_hash, action, asset_code, amount, wallet_id,
                                                 counterparty_wallet_id, usage_id, product, external_ref)
                SELECT 'erpbench-' || :run || '-' || g, 'bench',
                       (ARRAY['topup', 'bonus', 'usage', 'transfer'])[kind + 1], :a, 100, w,
                       CASE WHEN kind = 3 THEN other END,
                       CASE WHEN kind = 2 THEN 'use-' || :run || '-' || g END, CASE WHEN kind = 2 THEN 'api-calls' END,
                       CASE WHEN kind = 0 THEN 'pay-' || :run || '-' || g END
                  FROM seeded ORDER BY g
                """,
                run=run,
                a=ASSET,
            )
            con.run(
                """
                INSERT INTO ledger.entries (transaction_id, wallet_id, asset_code, amount, balance_after)
                SELECT x.id, x.wallet_id, :a, x.amount,
                       -- running balances, as postings leave them (customer legs only)
                       CASE WHEN w.kind = 'customer'
                            THEN w.balance + sum(x.amount) OVER (PARTITION BY x.wallet_id ORDER BY x.id, x.leg) END
                  FROM (SELECT t.id, leg.n AS leg, leg.wallet_id, leg.amount
                          FROM seeded s
                          JOIN ledger.transactions t ON t.idempotency_key = 'erpbench-' || :run || '-' || s.g
                         CROSS JOIN LATERAL (VALUES
                           (1, CASE s.kind WHEN 0 THEN :funding WHEN 1 THEN :promotion ELSE s.w END, -100::bigint),
                           (2, CASE s.kind WHEN 2 THEN :revenue WHEN 3 THEN s.other ELSE s.w END, 100::bigint)
                         ) AS leg(n, wallet_id, amount)) x
                  JOIN ledger.wallets w ON w.id = x.wallet_id
                 ORDER BY x.id, x.leg
                """,
                a=ASSET,
                run=run,
                funding=roles["funding"],
                promotion=roles["promotion"],
                revenue=roles["revenue"],
            )
            # The chunk's id range bounds every scan below: on rows this transaction has
            # just written, the planner has no statistics, and a join it believes matches
            # one row can turn into a nested loop over the whole table (seen: minutes).
            # On a fresh ledger even the range is not enough (the outbox update joined each
            # event to the chunk's 250,000 transactions, 9 minutes and counting): ANALYZE
            # here counts this transaction's own rows.
            con.run("ANALYZE ledger.transactions, ledger.entries, ledger.outbox")
            low, high = con.run(
                "SELECT min(id), max(id) FROM ledger.transactions WHERE created_xact = CAST(:xact AS xid8)",
                xact=xact,
            )[0]
            con.run(
                """
                UPDATE ledger.wallets w SET balance = w.balance + d.amount, entry_count = w.entry_count + d.legs
                  FROM (SELECT e.wallet_id, sum(e.amount) AS amount, count(*) AS legs
                          FROM ledger.entries e JOIN ledger.transactions t ON t.id = e.transaction_id
                         WHERE t.id BETWEEN :low AND :high AND t.created_xact = CAST(:xact AS xid8)
                         GROUP BY e.wallet_id) d
                 WHERE w.id = d.wallet_id AND w.kind = 'customer'
                """,
                xact=xact,
                low=low,
                high=high,
            )
            con.run(
                "UPDATE ledger.outbox o SET published_at = clock_timestamp()"
                " WHERE o.transaction_id BETWEEN :low AND :high AND o.published_at IS NULL"
                " AND EXISTS (SELECT 1 FROM ledger.transactions t"
                "              WHERE t.id = o.transaction_id AND t.created_xact = CAST(:xact AS xid8))",
                xact=xact,
                low=low,
                high=high,
            )
            con.run("COMMIT")
            done += size
            print(f"    seeded {done:,} of {count:,}", file=sys.stderr, flush=True)
        # vacuumed now, or autovacuum does it (minutes, and a checkpoint's worth of dirty
        # pages) under whatever is measured next
        for table in ("transactions", "entries", "outbox", "wallets"):
            con.run(f"VACUUM (ANALYZE) ledger.{table}")
    finally:
        con.close()


@contextmanager
def totals_receiver(stack: Stack) -> Iterator[int]:
    """A local ERP receiver that keeps totals only (a million events' lines would not
    fit), on a port of the stack's range; yields its port."""
    port = stack.port_base + 9
    receiver = subprocess.Popen(
        [sys.executable, "-m", "emulators.erp_receiver", f"--port={port}", "--no-lines"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: port_open(port), "benchmark ERP receiver", 20)
        yield port
    finally:
        receiver.terminate()
        receiver.wait(10)


def run(stack: Stack, count: int) -> dict[str, object]:
    """Seed `count` transactions, export them, and return the figures."""
    from bench.setup import empty_erp_stream

    stream = empty_erp_stream(stack)
    started = time.monotonic()
    seed(stack, count)
    seed_s = time.monotonic() - started
    with totals_receiver(stack) as port:
        env = {
            **os.environ,
            **stack.function_env("erp_export"),
            "LEDGER_ERP_STREAM": stream,
            "LEDGER_ERP_URL": f"http://127.0.0.1:{port}",
            "LEDGER_ERP_PASS_BUDGET_S": "3600",
            "PYTHONPATH": str(REPO),
        }
        child = subprocess.run(
            [sys.executable, "-m", "bench.erp_export", "--child"], env=env, capture_output=True, text=True, timeout=3600
        )
        if child.returncode != 0:
            raise RuntimeError(f"the export failed: {child.stderr[-2000:]}")
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        with urllib_open(f"http://127.0.0.1:{port}/stats") as stats:
            booked = json.loads(stats.read())
        if booked["lines"] != figures["lines"] or booked["duplicates"] or booked["unbalanced"]:
            raise RuntimeError(f"the ERP booked {booked} of {figures['lines']} lines sent")
        figures["erp_booked_lines"] = booked["lines"]
    figures["seed_s"] = round(seed_s, 1)
    return figures


def urllib_open(url: str):  # noqa: ANN201
    import urllib.request

    return urllib.request.urlopen(url, timeout=10)


def table(figures: dict[str, object]) -> str:
    rss = figures["rss_mib"]
    return "\n".join(
        [
            "| events | lines | booked by the ERP | batches | seconds | events/s"
            " | exporter memory at 1% / 50% / 100%, MiB | peak MiB |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {figures['events']:,} | {figures['lines']:,} | {figures['erp_booked_lines']:,} | {figures['batches']:,}"
            f" | {figures['seconds']:.1f}"
            f" | {figures['events_per_s']:,.0f} | {rss[0]:.0f} / {rss[1]:.0f} / {rss[2]:.0f}"
            f" | {figures['peak_mib']:.0f} |",
        ]
    )


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _child() -> None:
    """One export pass until caught up, as the erp_export function runs it."""
    from common import bootstrap

    export = bootstrap.erp_export()
    store = export._store
    samples: list[float] = []
    original = store.record_batch

    def record_and_sample(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        samples.append(_rss_mib())
        return original(*args, **kwargs)

    store.record_batch = record_and_sample
    started = time.monotonic()
    report = export.run_pass()
    seconds = time.monotonic() - started
    if not report.caught_up or report.erp_down or report.delivered != report.batches:
        raise SystemExit(f"the export did not finish cleanly: {report.as_dict()}")
    picks = [samples[max(0, int(len(samples) * share) - 1)] for share in (0.01, 0.5, 1.0)] if samples else [0, 0, 0]
    print(
        json.dumps(
            {
                "events": report.events,
                "lines": report.lines,
                "batches": report.batches,
                "seconds": seconds,
                "events_per_s": report.events / seconds if seconds else 0,
                "rss_mib": picks,
                "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    if "--child" in sys.argv:
        _child()
    else:
        count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
        stack = Stack(os.environ.get("LEDGER_BENCH_PROFILE", "dev"))
        os.environ.update(stack.in_process_env())
        print(table(run(stack, count)))
