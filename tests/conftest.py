"""Test configuration shared by every tier.

The integration and end-to-end tiers run against a throw-away stack (profile "test",
its own ports and data) started once per session; unit tests never start it.
"""

import os
import shutil

import pytest

from emulators.stack import Stack

TEST_STACK = Stack("test")
# Point common/ at the test stack before anything reads its settings; its database login
# once the stack has drawn its passwords.
os.environ.update(TEST_STACK.env())


@pytest.fixture(scope="session")
def stack():
    from common.config import get_settings
    from tests.support import assert_invariants

    TEST_STACK.down()
    shutil.rmtree(TEST_STACK.state_dir, ignore_errors=True)
    TEST_STACK.up()
    os.environ.update(TEST_STACK.in_process_env())
    get_settings.cache_clear()
    yield TEST_STACK
    try:
        # every invariant over the whole ledger once more: after each test, each
        # transaction's own checks ran only for the transactions it posted
        assert_invariants(TEST_STACK)
    finally:
        TEST_STACK.down()


def pytest_addoption(parser):
    parser.addoption(
        "--bench-smokes",
        action="store_true",
        help="also run the bench tools' own smoke tests (make bench-smoke), which make test leaves out for time",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "bench_smoke: a bench tool's own smoke run; only with --bench-smokes (make bench-smoke), to keep make test"
        " within its time",
    )
    config.addinivalue_line(
        "markers",
        "grows_ledger: posts tens of thousands of transactions; runs after every other test (see"
        " pytest_collection_modifyitems)",
    )
    config.addinivalue_line(
        "markers",
        "kills_components: kills and restarts the stack's own processes (Postgres among them); runs last, so no"
        " other test meets a function whose idle connections died with the server",
    )


def pytest_collection_modifyitems(config, items):
    """Tests that grow the ledger by tens of thousands of transactions run last. Every
    other test's invariant check reads the whole ledger, and the hash-chain tests link
    and verify all of it (by design), so on a ledger grown early each of them would pay
    for those rows again; run last, the rows are checked once, by the session's final
    whole-ledger check. The sort is stable: every other test keeps its place."""
    items.sort(
        key=lambda item: (
            item.get_closest_marker("kills_components") is not None,
            item.get_closest_marker("grows_ledger") is not None,
        )
    )
    if not config.getoption("--bench-smokes"):
        skip = pytest.mark.skip(reason="a bench tool's smoke: make bench-smoke runs it")
        for item in items:
            if item.get_closest_marker("bench_smoke"):
                item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    """Name the PostgreSQL versions the ledger was tested on (tests/integration/test_postgres_versions.py)."""
    versions = [
        value
        for report in terminalreporter.stats.get("passed", [])
        for name, value in report.user_properties
        if name == "postgres_version"
    ]
    if versions:
        terminalreporter.write_line(f"PostgreSQL versions tested: {', '.join(versions)}")
