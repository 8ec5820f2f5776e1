"""The invariant check itself can fail: a cached balance nudged by hand (inside a
transaction that is rolled back) is reported."""

from common.adapters.reconciliation import find_violations
from tests.support import new_wallet, owner


def test_a_cached_balance_that_drifts_from_its_entries_is_reported(stack):
    wallet = new_wallet(stack, funded=10)
    con = owner(stack)
    try:
        con.run("BEGIN")
        con.run("UPDATE ledger.wallets SET balance = balance + 1 WHERE id = :w", w=wallet)
        violations = find_violations(lambda sql: con.run(sql))
        con.run("ROLLBACK")
    finally:
        con.close()
    assert [row[0] for row in violations["cached_balance_equals_entry_sum"]] == [wallet]
    assert [row[0] for row in violations["running_balance_matches_cache"]] == [wallet]
