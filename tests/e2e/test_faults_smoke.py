"""`make faults` in short, inside `make test`: Postgres killed right after an
acknowledgement, then restarted as a failover would (every session ended, the server back
at its address), while traffic flows at a low rate; then every request, posting, balance,
event and ERP booking accounted for (bench/faults.py). The other faults take longer (an
emulator's restart, a lease to run out): `make faults`."""

import pytest

from bench import faults
from tests.support import sql


@pytest.mark.kills_components
def test_nothing_is_lost_or_duplicated_when_postgres_dies_or_fails_over_under_load(stack):
    # What an acknowledged posting relies on when Postgres crashes (docs/durability.md):
    # its commit waited for its WAL. Off, this test could pass only by luck; and no role or
    # database setting may turn it off for the functions' logins.
    assert sql(stack, "SHOW synchronous_commit") == [["on"]]
    assert sql(
        stack,
        "SELECT count(*) FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') LIKE '%synchronous_commit%'",
    ) == [[0]]

    outcome = faults.run(
        stack, ["postgres-kill", "postgres-restart"], rate=10, before_s=3, after_s=3, hold_s=1, pause_s=0, settle_s=60
    )

    print(outcome.text)
    assert outcome.clean, outcome.text
    killed, restarted = outcome.accounting.rows
    # the faults were felt, and what was acknowledged before each came through
    for row in (killed, restarted):
        assert row.acked_before > 0 and row.acked_before_present == row.acked_before, row
        assert sum(row.failed_attempts.values()) > 0 and row.answers["posted"] > 0, row
    assert killed.answers["refused"] + restarted.answers["refused"] > 0  # the overdrafts, refused every time
