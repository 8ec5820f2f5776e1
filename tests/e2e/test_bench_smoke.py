"""The benchmark's quick mode as a correctness smoke test: every scenario runs against
the test stack without an unexpected error, and the money invariants hold after it.
Nothing here looks at speed."""

import subprocess
import sys

import pytest

from emulators.stack import REPO


@pytest.mark.grows_ledger
def test_bench_quick_mode_runs_without_unexpected_errors(stack):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--profile",
            "test",
            "--duration",
            "1",
            "--wallets",
            "200",
            "--hot-workers",
            "8",
            "--http-clients",
            "4",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "pgbench: plain-SQL transfer" in result.stdout and "core: transfer among 200 wallets" in result.stdout
    # every exported event reached the ERP as two booked lines (the bench checks the counts)
    assert "| 10,000 | 20,000 | 20,000 |" in result.stdout


@pytest.mark.grows_ledger
def test_bulk_usage_intake_bench_posts_every_record_once(stack):
    """make bench-intake, small: 2,000 usage records through Pub/Sub and the actions
    function; the bench itself fails unless each usage id posted exactly once and the
    reconciliation passes."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.usage_intake", "--profile", "test", "--records", "2000", "--wallets", "200"]
        + ["--lock-batches", "1", "--no-write"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| usage ids posted exactly once | yes (2,000 postings) |" in result.stdout
    assert "| python -m common.reconcile | passes (" in result.stdout
