"""The benchmark's quick mode as a correctness smoke test: every scenario runs against
the test stack without an unexpected error, and the money invariants hold after it.
Nothing here looks at speed."""

import itertools
import subprocess
import sys
import time

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


@pytest.mark.grows_ledger
def test_bulk_jobs_bench_runs_and_the_ledger_reconciles(stack):
    """make bench-bulk, small: an import, dormant sweeps until nothing is due, live
    traffic beside them; the bench itself fails unless the import reconciles, a second
    sweep finds nothing and `python -m common.reconcile` passes."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.bulk", "--profile", "test", "--rows", "1500", "--wallets", "3000"]
        + ["--dormant", "300", "--live-rows", "1500", "--live-seconds", "2", "--clients", "2", "--http-wallets", "200"]
        + ["--no-write"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| 1,500 | 3 |" in result.stdout and "| yes (" in result.stdout
    assert "| 3,000 | 300 |" in result.stdout and "| swept 0, warned 0 |" in result.stdout
    assert "`python -m common.reconcile` afterwards: passes (" in result.stdout


@pytest.mark.grows_ledger
def test_open_loop_latency_bench_counts_every_request_and_prints_its_table(stack):
    """make bench-latency, small: the mix at 20 requests/s for 2 recorded seconds (after
    1 s of warm-up), one step. The tool exits 1 unless every scheduled request was counted
    once (answered, failed or timed out) and the invariants hold; no speed is judged."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.openloop", "--profile", "test", "--rate", "20", "--max-rate", "20"]
        + ["--duration", "2", "--warmup", "1", "--workers", "4", "--wallets", "200"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| offered /s | achieved /s | requests |" in result.stdout
    assert "\n| 20 | " in result.stdout and " | 40 | " in result.stdout
    assert "Every request counted once: yes (40 scheduled, 40 counted)" in result.stdout
    assert "Money invariants afterwards: hold." in result.stdout


@pytest.mark.grows_ledger
@pytest.mark.bench_smoke
def test_cost_bench_prices_every_money_function(stack):
    """python -m bench.cost, tiny: each money function runs, answers, and gets a price
    line; the tool fails on an unexpected error or a function that answered nothing."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.cost", "--profile", "test", "--duration", "1", "--warmup", "0.5"]
        + ["--clients", "2", "--wallets", "200"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for function in ("topup", "usage", "transfer", "void"):
        assert f"| {function} | 1, 512 MiB, 8 |" in result.stdout


@pytest.mark.grows_ledger
@pytest.mark.bench_smoke
def test_soak_open_loop_records_every_request_with_its_percentiles(stack, tmp_path):
    """make soak, tiny: 300 actions at 100 requests/s. The tool exits 1 unless every
    request was answered, the outbox drained and the invariants hold; the report must
    time every one of the 300 (overall and per action) and write its table and plot."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--profile", "test", "--actions", "300", "--rate", "100"]
        + ["--workers", "8", "--wallets", "200", "--write", "--results", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (tmp_path / "soak.md").read_text()
    assert report in result.stdout and (tmp_path / "soak.png").stat().st_size > 0
    lines = report.splitlines()
    header = lines.index(
        "| requests | ok | refused | failed | achieved /s | p50 ms | p95 ms | p99 ms | p99.9 ms | max ms |"
    )
    cells = [cell.strip().replace(",", "") for cell in lines[header + 2].strip("|").split("|")]
    requests, ok, refused, failed = (int(cell) for cell in cells[:4])
    assert requests == ok + refused == 300 and failed == 0
    assert all(float(cell) > 0 for cell in cells[5:])  # p50, p95, p99, p99.9, max
    first = lines.index(next(line for line in lines if line.startswith("| action | requests |"))) + 2
    per_action = list(itertools.takewhile(lambda line: line.startswith("|"), lines[first:]))
    assert {line.split("|")[1].strip() for line in per_action} <= {"topup", "usage", "transfer", "void"}
    assert sum(int(line.split("|")[2].replace(",", "")) for line in per_action) == 300
    assert "Errors by status: none. Every request counted once: yes." in report
    assert "Money invariants after the run: intact." in report
    assert f"| {ok:,} | {ok:,} | 0 |" in report  # events written, published, still pending: one per posting


@pytest.mark.grows_ledger
@pytest.mark.bench_smoke
def test_soak_fails_when_a_request_fails_other_than_by_a_refusal(stack):
    """20 actions with a 1 ms timeout: each times out (or its time runs out before it is
    sent), the report counts them by status, and the run exits 1. The functions still
    post what they were sent: the test waits for that before the next one begins."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--profile", "test", "--actions", "20", "--rate", "100"]
        + ["--workers", "2", "--wallets", "200", "--timeout", "0.001"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    errors = result.stdout.split("Errors by status: ", 1)[1].split(". Every request", 1)[0]
    counts = [int(part.rsplit(" × ", 1)[1].replace(",", "")) for part in errors.split(", ")]
    # a request the functions answer within the 1 ms is not an error, however unlikely
    assert errors.startswith("timeout") and 1 <= sum(counts) <= 20, errors
    assert "Every request counted once: yes" in result.stdout
    until_the_ledger_is_still(stack)


def until_the_ledger_is_still(stack, quiet_s: float = 2.0, at_most_s: float = 30.0) -> None:
    """Wait until no transaction has been posted for `quiet_s` (the abandoned requests'
    postings have landed), at most `at_most_s`."""
    last, still_since, deadline = None, time.monotonic(), time.monotonic() + at_most_s
    while time.monotonic() < deadline:
        now = stack.psql("SELECT coalesce(max(id), 0) FROM ledger.transactions", database=stack.owner_dsn()["database"])
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= quiet_s:
            return
        time.sleep(0.2)
