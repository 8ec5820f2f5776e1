"""Cold starts against each function's own yardstick (bench/cold_start.py): the
yardstick tables hold for the real first requests, and the measuring tool runs.
Nothing here looks at speed."""

import os
import subprocess
import sys

import pytest

from bench import cold_start, setup
from bench.yardsticks import BACKGROUND, NEEDS, loaded_by_first_request
from emulators.stack import REPO

# the tool runs in make bench's quick mode too; this smoke runs with make bench-smoke
pytestmark = pytest.mark.bench_smoke


@pytest.fixture(scope="module")
def given(stack):
    return cold_start.prepare(stack)


@pytest.mark.grows_ledger  # the bench's setup gives a young ledger 20,000 transactions of history
@pytest.mark.parametrize("name", sorted(NEEDS))
def test_a_first_request_uses_exactly_the_packages_of_its_yardstick(stack, given, name):
    """A function that starts using a design package on its first request (or stops) must
    have its yardstick changed with it, or the comparison is not like for like."""
    request = cold_start.first_request(name, given["wallet"], given["asset"], given["member"])
    if name == "void":
        request = (
            *request[:2],
            {"transaction_id": setup.voidable_transactions(stack, given["wallet"], 1)[0]},
            request[3],
        )
    if name == "outbox_sweeper":  # its tick publishes what is pending, as on the bench
        setup.voidable_transactions(stack, given["wallet"], 1)
    env = {
        **os.environ,
        **stack.function_env(name),
        "LEDGER_ERP_STREAM": given["erp_stream"],
        "LEDGER_CHAIN_EXTEND_BUDGET_S": "0",
        "LEDGER_OUTBOX_SWEEP_MIN_AGE_S": "0",
    }
    own, background = loaded_by_first_request(name, env, request)
    assert own == set(NEEDS[name])
    assert background <= set(BACKGROUND.get(name, ()))


def _run_cold_start(*arguments: str) -> str:
    """`python -m bench.cold_start --profile test --repeats 1 ARGUMENTS`: its report, once
    it has exited 0."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.cold_start", "--profile", "test", "--repeats", "1", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.grows_ledger
def test_the_cold_start_tool_measures_a_function_beside_its_yardstick(stack, given):
    """`python -m bench.cold_start`, once each: an HTTP money function and a pushed one
    that publishes, each with its own yardstick (every first call of the yardstick runs)."""
    report = _run_cold_start("--function", "topup", "--function", "outbox_sweeper")
    assert "| empty function (a plain reference) | none |" in report
    assert "| topup | pydantic, google-auth, pg8000, redis, firestore |" in report
    assert "| outbox_sweeper | pg8000, pubsub |" in report


@pytest.mark.grows_ledger
def test_the_cold_start_tool_times_the_first_request_of_an_idle_instance(stack, given):
    """`--idle`: the first request alone on an instance that has listened a while, here
    with the warm-up on start switched on for the function (never for its yardstick)."""
    report = _run_cold_start("--function", "wallets", "--idle", "0.1", "--env", "LEDGER_WARM_UP_ON_START=true")
    assert "with LEDGER_WARM_UP_ON_START=true" in report
    assert "| function | its yardstick's first calls | first request alone, ms |" in report
    assert "| wallets | google-auth, pg8000, redis |" in report
