"""`make faults` in short, inside `make test`: Postgres killed right after an
acknowledgement and one function's process killed mid-request, at a low rate, then every
request, posting, balance, event and ERP booking accounted for (bench/faults.py)."""

import pytest

from bench import faults
from tests.support import sql


@pytest.mark.kills_components
def test_nothing_is_lost_or_duplicated_when_postgres_and_a_function_die_under_load(stack):
    # What an acknowledged posting relies on when Postgres crashes (docs/durability.md):
    # its commit waited for its WAL. Off, this test could pass only by luck; and no role or
    # database setting may turn it off for the functions' logins.
    assert sql(stack, "SHOW synchronous_commit") == [["on"]]
    assert sql(
        stack,
        "SELECT count(*) FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') LIKE '%synchronous_commit%'",
    ) == [[0]]

    outcome = faults.run(
        stack, ["postgres-kill", "function-kill"], rate=10, before_s=4, after_s=4, hold_s=1, pause_s=0, settle_s=90
    )

    print(outcome.text)
    assert outcome.clean, outcome.text
    postgres, function = outcome.accounting.rows
    # the faults were felt, and what was acknowledged before each came through
    assert postgres.acked_before > 0 and postgres.acked_before_present == postgres.acked_before
    assert sum(postgres.failed_attempts.values()) > 0 and sum(function.failed_attempts.values()) > 0
    assert postgres.answers["posted"] > 0 and function.answers["posted"] > 0
    assert postgres.answers["refused"] + function.answers["refused"] > 0  # the overdrafts, refused every time
