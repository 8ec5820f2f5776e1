"""The ledger's invariants as queries: each returns the rows that break one.

Run after every integration test and by `python -m common.reconcile`. An empty result
for all of them is the proof that the cached balances and the double entry hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

INVARIANTS: dict[str, str] = {
    "entries_sum_to_zero_per_asset": """
        SELECT asset_code, sum(amount) FROM ledger.entries GROUP BY asset_code HAVING sum(amount) <> 0""",
    "every_transaction_balances": """
        SELECT t.id, e.asset_code, coalesce(sum(e.amount), 0), count(e.id)
          FROM ledger.transactions t LEFT JOIN ledger.entries e ON e.transaction_id = t.id
         GROUP BY t.id, e.asset_code HAVING coalesce(sum(e.amount), 0) <> 0 OR count(e.id) < 2""",
    "cached_balance_equals_entry_sum": """
        SELECT w.id, w.balance, coalesce(s.total, 0), w.entry_count, coalesce(s.legs, 0)
          FROM ledger.wallets w
          LEFT JOIN (SELECT wallet_id, sum(amount) AS total, count(*) AS legs
                       FROM ledger.entries GROUP BY wallet_id) s ON s.wallet_id = w.id
         WHERE w.kind = 'customer' AND (w.balance <> coalesce(s.total, 0) OR w.entry_count <> coalesce(s.legs, 0))""",
    "running_balance_matches_cache": """
        SELECT w.id, w.balance, last.balance_after FROM ledger.wallets w
          JOIN LATERAL (SELECT balance_after FROM ledger.entries e WHERE e.wallet_id = w.id
                         ORDER BY e.id DESC LIMIT 1) last ON true
         WHERE w.kind = 'customer' AND last.balance_after IS DISTINCT FROM w.balance""",
    "customer_balance_within_limit": """
        SELECT id, balance, credit_limit FROM ledger.wallets
         WHERE kind = 'customer' AND balance < -credit_limit""",
    "running_balance_only_on_customer_entries": """
        SELECT e.id FROM ledger.entries e JOIN ledger.wallets w ON w.id = e.wallet_id
         WHERE (w.kind = 'customer') <> (e.balance_after IS NOT NULL)""",
}


def find_violations(run: Callable[[str], list[list[Any]]]) -> dict[str, list[list[Any]]]:
    """Every invariant that fails, with up to 10 offending rows each."""
    found = {}
    for name, sql in INVARIANTS.items():
        rows = run(sql + " LIMIT 10")
        if rows:
            found[name] = rows
    return found
