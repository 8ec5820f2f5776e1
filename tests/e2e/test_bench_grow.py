"""The grown-ledger seeder (bench/grow.py) as a correctness smoke test, small: a
throwaway database on the test stack, seeded in bulk with the guards' triggers off, must
hold every invariant find_violations checks, a hash chain whose row hashes are
ledger.chain_text()'s, and be reused rather than seeded again. Nothing here looks at
speed."""

import re
import subprocess
import sys
import uuid

import pg8000.native
import pytest

from bench import grow
from emulators.stack import REPO


@pytest.mark.grows_ledger
def test_grown_ledger_holds_every_invariant_and_is_reused(stack):
    name = f"grow_smoke_{uuid.uuid4().hex[:8]}"
    try:
        report = grow.grow(stack, name, entries=20_000, customers=1_000, trees=1, chunk=4_000)
        assert report["transactions"] == 10_000 and report["chain_linked"] >= 10_000
        assert grow.check(stack, name) == {}
        con = pg8000.native.Connection(**grow.database_dsn(stack, name))
        try:
            # the jobs start caught up: nothing unpublished, the ERP cursor and the
            # checkpoints' horizon at the last transaction, every transaction linked
            last = con.run(
                "SELECT t.created_xact::text, t.id FROM ledger.transactions t"
                " ORDER BY t.created_xact DESC, t.id DESC LIMIT 1"
            )
            assert con.run("SELECT after_xact::text, after_id FROM erp.cursors WHERE name = 'erp'") == last
            assert con.run("SELECT after_xact::text, after_id FROM ledger.balance_horizon") == last
            assert con.run("SELECT count(*) FROM ledger.outbox WHERE published_at IS NULL") == [[0]]
            assert con.run("SELECT linked FROM ledger.extend_chain(100)") == [[0]]
            assert con.run(
                "SELECT count(*) FROM ledger.chain_links l"
                " WHERE l.row_hash <> sha256(convert_to(ledger.chain_text(l.transaction_id), 'UTF8'))"
            ) == [[0]]
            # the shapes: lots, trees, a heavy customer's deep history, no index left dropped
            assert con.run("SELECT count(*) > 0 FROM ledger.lots") == [[True]]
            # usages spend the bonus lots first, as postings do: almost every lot is spent
            # within its visit (a visit split across two chunks may leave one partly open)
            open_lots, lots = con.run("SELECT count(*) FILTER (WHERE remaining > 0), count(*) FROM ledger.lots")[0]
            assert open_lots <= lots // 10, (open_lots, lots)
            assert con.run("SELECT count(*) > 0 FROM ledger.lot_movements WHERE amount < 0") == [[True]]
            # three years of history, in id order (the trees, posted first, aside)
            first, last_at = con.run(
                "SELECT min(created_at), max(created_at) FROM ledger.transactions"
                " WHERE idempotency_key ~ '^grow-[0-9]+$'"
            )[0]
            assert (last_at - first).days > 2 * 365
            assert con.run(
                "SELECT count(*) FROM (SELECT created_at < lag(created_at) OVER (ORDER BY id) AS back"
                " FROM ledger.transactions WHERE idempotency_key ~ '^grow-[0-9]+$') x WHERE back"
            ) == [[0]]
            assert con.run("SELECT start_xact::text, start_id FROM erp.cursors WHERE name = 'erp'") == last
            assert con.run("SELECT count(*) FROM ledger.wallets WHERE parent_id IS NOT NULL") == [[110]]
            assert con.run("SELECT max(entry_count) >= 50 FROM ledger.wallets") == [[True]]
            assert con.run("SELECT dropped_indexes FROM public.grown_ledger") == [[[]]]
        finally:
            con.close()
        again = grow.grow(stack, name, entries=20_000, customers=1_000, trees=1, chunk=4_000)
        assert again["transactions"] == 0 and again["seeded_before"] == 20_000
    finally:
        stack.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.grows_ledger
def test_bench_scale_measures_a_grown_and_a_fresh_ledger(stack):
    """make bench-scale, tiny: seeds, makes the fresh database, measures both and prints
    the side-by-side table; find_violations must pass on both (the bench fails if not).
    The ERP export must deliver exactly the new events, booked once each, and the second
    set of functions must serve the measured database, not the stack's (a wallet read
    through it must answer that database's row): the bench fails if not."""
    name = f"scale_smoke_{uuid.uuid4().hex[:8]}"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "bench.scale", "--profile", "test", "--database", name, "--entries", "4000"]
            + ["--customers", "100", "--trees", "1", "--workers", "2", "--seconds", "0.5", "--warmup", "0.2"]
            + ["--reads", "5", "--erp-events", "200", "--http-wallets", "20", "--http-clients", "4"]
            + ["--http-rate", "20", "--http-seconds", "0.5", "--http-warmup", "0.2"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        rows = ("core postings/s", "history, deep page", "wallet read, system account", "roll-up of a tree")
        for row in (*rows, "ERP export, events/s (200 new)", "HTTP mix, closed loop", "HTTP mix at 20/s"):
            assert f"| {row}" in result.stdout
        # both databases reconciled in full once (neither checkpoint had passed its seed),
        # then incrementally over exactly what the run posted after that
        full = next(line for line in result.stdout.splitlines() if line.startswith("| full reconciliation"))
        assert "checkpoint already past" not in full
        incremental = next(line for line in result.stdout.splitlines() if line.startswith("| incremental"))
        counts = re.search(r"\(([\d,]+) / ([\d,]+) transactions\)", incremental)
        assert counts, incremental
        posted = [int(n.replace(",", "")) for n in counts.groups()]
        assert all(n > 200 for n in posted), incremental  # the ERP run's 200, the postings' and the mix's
        assert "| ledger.entries |" in result.stdout  # the vacuum table of the grown ledger
    finally:
        stack.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        stack.psql(f"DROP DATABASE IF EXISTS {name}_fresh WITH (FORCE)")
