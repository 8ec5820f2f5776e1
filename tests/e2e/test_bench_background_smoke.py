"""`make bench-background` in small (bench/background.py): every job clears a tiny
backlog beside a few seconds of open-loop traffic, unpaced and paced, on the test stack;
the table lists each job in both modes, and the money invariants hold (the bench exits 1
otherwise). Nothing here looks at latency."""

import subprocess
import sys

import pytest

from bench.background_jobs import JOBS
from emulators.stack import REPO

pytestmark = pytest.mark.bench_smoke


@pytest.mark.grows_ledger  # the bench's setup gives a young ledger 20,000 transactions of history
def test_every_background_job_clears_its_backlog_unpaced_and_paced(stack, tmp_path):
    out = tmp_path / "background.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench.background", "--profile", "test", "--rates", "20", "--modes", "off,adaptive"]
        + ["--events", "2000", "--sweep", "2000", "--lots", "2000", "--wallets", "2000", "--dormant", "200"]
        + ["--rows", "2000", "--quiet", "2", "--warmup", "1", "--settle", "0", "--http-wallets", "50"]
        + ["--job-timeout", "300", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = out.read_text()
    assert text.strip() == result.stdout.strip()
    for job in JOBS:
        for mode in ("off", "adaptive"):
            assert f"| {job}: quiet before | {mode} |" in text, (job, mode)
            row = next(line for line in text.splitlines() if line.startswith(f"| **{job}** | {mode} |"))
            assert "did not clear" not in row, row
    assert "Money invariants afterwards: hold." in text
