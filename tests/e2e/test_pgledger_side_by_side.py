"""pgledger side by side and where a posting's database time goes, small: the tools run
and print their tables. Nothing here looks at speed."""

import subprocess
import sys

import pytest

from bench import pgledger
from emulators.stack import REPO

# the tool runs in make bench's quick mode too; this smoke runs with make bench-smoke
pytestmark = [
    pytest.mark.skipif(not pgledger.available(), reason="pgledger's anchor is not beside the repository"),
    pytest.mark.bench_smoke,
]


def _run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", *args, "--profile", "test"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.grows_ledger
def test_server_side_installs_pgledger_and_runs_every_script_once(stack):
    """One 1-second round of each script with 2 clients (our core from Python too),
    pgledger installed from the anchor into its own database; the table has every run,
    ratio and sizing row."""
    out = _run(
        "bench.server_side",
        "--rounds",
        "1",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--workers",
        "2",
        "--hot-workers",
        "2",
        "--wallets",
        "200",
    )
    for run in (
        "plain-SQL transfer",
        "ledger.commit_posting() (pgbench)",
        "pgledger uniform transfer",
        "our core from Python",
        "our hot treasury top-ups",
        "pgledger hot account",
    ):
        assert f"| {run}" in out
    assert "| ledger.commit_posting() / pgledger uniform |" in out
    assert "| our core from Python / pgledger uniform |" in out
    assert "| our core from Python / pgledger uniform | n/a" not in out
    assert "| our hot treasury / pgledger hot |" in out
    assert "| Postgres CPU per posting: commit_posting / plain SQL |" in out
    assert "one primary tops out at" in out
    assert stack.psql("SELECT count(*) FROM bench_acct", database=pgledger.DATABASE).strip() == "10001"
    assert int(stack.psql("SELECT count(*) FROM pgledger_transfers", database=pgledger.DATABASE)) > 0


@pytest.mark.grows_ledger
def test_db_time_counts_the_statements_inside_commit_posting(stack):
    """track = all: the nested statements (the entries' insert, the outbox row and the
    balance check run by their statement-level triggers) are rows of their own. A
    transfer's posting runs no foreign-key check since migration 0019 (the references
    are the guards' own queries), so none is counted."""
    out = _run("bench.db_time", "--postings", "100", "--wallets", "200", "--top", "40")
    assert "100 postings" in out
    assert "INSERT INTO entries" in out
    assert "| outbox row |" in out
    assert "| statement-level trigger (balance, entries present) |" in out
    assert "| foreign-key check |" not in out
    assert "| ledger.write_outbox |" in out
    assert "| ledger.check_transaction_has_entries |" in out
