"""The ledger's invariants checked after the reconciliation checkpoint only.

The checkpoint (db/schema/33_reconciliation_checkpoint.sql) stands at a place in
commit order, (created_xact, id), below which every ledger transaction was final and
checked when it moved there, with the sums of those transactions' entries. Here, in the
caller's one snapshot:

- each transaction after it gets every per-transaction check of the full run (its legs
  balance and follow its action's rule, its entries' running balances continue the
  wallet's previous one, its lot movements and spend charges follow its entries);
- each lot and spend counter those transactions touched is summed over its own rows;
- each wallet those transactions touched has its lot balance summed over its own lots;
- the current state is checked against the totals plus what came after: per asset, the
  entries sum to zero and the customer wallets' balances and entry counts add up; per
  system account, its balance checkpoint; and the cheap state checks of the full run
  (each wallet's cached balance against its last running balance, limits, trees),
  which read a row per wallet, never the history.

So the cost follows what is new, plus one index probe per wallet. What the checkpoint
cannot see is a row rewritten below it (around the database's guards), an entry naming
no transaction, nor a lot, a spend counter or a wallet's lot balance changed without a
new movement or charge:
those are the full run's to find (`python -m common.reconcile --full`,
docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common.adapters.reconciliation import INVARIANTS

Run = Callable[..., list[list[Any]]]

# the transactions after the checkpoint that this snapshot sees
_NEW = "WITH new_t AS (SELECT * FROM ledger.transactions WHERE (created_xact, id) > (CAST(:hx AS xid8), :hid))"
_AFTER = "(CAST(:hx AS xid8), :hid)"

# the full run's checks of the current state whose cost is a row (or an index probe)
# per wallet or tree member, not the history
_STATE_CHECKS = (
    "running_balance_matches_cache",
    "customer_balance_within_limit",
    "non_expiring_balance_within_limit",
    "tree_paths_consistent",
)

INCREMENTAL: dict[str, str] = {
    "entries_sum_to_zero_per_asset": f"""{_NEW}
        SELECT a.code, coalesce(c.customer_sum, 0) + coalesce(s.total, 0) + coalesce(n.total, 0)
          FROM ledger.assets a
          LEFT JOIN ledger.reconciliation_asset_totals c ON c.asset_code = a.code
          LEFT JOIN (SELECT asset_code, sum(balance) AS total FROM ledger.reconciliation_system_totals
                      GROUP BY asset_code) s ON s.asset_code = a.code
          LEFT JOIN (SELECT e.asset_code, sum(e.amount) AS total FROM new_t t
                       JOIN ledger.entries e ON e.transaction_id = t.id GROUP BY e.asset_code) n
            ON n.asset_code = a.code
         WHERE coalesce(c.customer_sum, 0) + coalesce(s.total, 0) + coalesce(n.total, 0) <> 0""",
    "every_transaction_balances": f"""{_NEW}
        SELECT t.id, e.asset_code, coalesce(sum(e.amount), 0), count(e.id)
          FROM new_t t LEFT JOIN ledger.entries e ON e.transaction_id = t.id
         GROUP BY t.id, e.asset_code HAVING coalesce(sum(e.amount), 0) <> 0 OR count(e.id) < 2""",
    # the customer wallets of each asset hold, together, the checkpoint's customer
    # entries plus the new ones; each wallet's own cache is its last running balance
    # (running_balance_matches_cache), and each new running balance continues the one
    # before (running_balance_continuous), so by induction each cache is its entries' sum
    "customer_totals_equal_entry_sums": f"""{_NEW}
        SELECT a.code, w.balance, w.entries, coalesce(c.customer_sum, 0) + coalesce(n.total, 0),
               coalesce(c.customer_entries, 0) + coalesce(n.legs, 0)
          FROM ledger.assets a
          LEFT JOIN (SELECT asset_code, sum(balance) AS balance, sum(entry_count) AS entries FROM ledger.wallets
                      WHERE kind = 'customer' GROUP BY asset_code) w ON w.asset_code = a.code
          LEFT JOIN ledger.reconciliation_asset_totals c ON c.asset_code = a.code
          LEFT JOIN (SELECT e.asset_code, sum(e.amount) AS total, count(*) AS legs FROM new_t t
                       JOIN ledger.entries e ON e.transaction_id = t.id AND e.balance_after IS NOT NULL
                      GROUP BY e.asset_code) n ON n.asset_code = a.code
         WHERE coalesce(w.balance, 0) <> coalesce(c.customer_sum, 0) + coalesce(n.total, 0)
            OR coalesce(w.entries, 0) <> coalesce(c.customer_entries, 0) + coalesce(n.legs, 0)""",
    # customer entries only (a system account's have no running balance): the previous
    # entry is looked up for half the legs
    "running_balance_continuous": f"""{_NEW}
        SELECT e.id, e.wallet_id, e.amount, e.balance_after, p.balance_after
          FROM new_t t JOIN ledger.entries e ON e.transaction_id = t.id AND e.balance_after IS NOT NULL
          LEFT JOIN LATERAL (SELECT p.balance_after FROM ledger.entries p
                              WHERE p.wallet_id = e.wallet_id AND p.id < e.id ORDER BY p.id DESC LIMIT 1) p ON true
         WHERE e.balance_after <> coalesce(p.balance_after, 0) + e.amount""",
    "running_balance_only_on_customer_entries": f"""{_NEW}
        SELECT e.id FROM new_t t JOIN ledger.entries e ON e.transaction_id = t.id
          JOIN ledger.wallets w ON w.id = e.wallet_id
         WHERE (w.kind = 'customer') <> (e.balance_after IS NOT NULL)""",
    # a system account's balance checkpoint is the reconciliation's total for it, plus
    # its entries between the two horizons (or minus them, when the balance horizon is
    # the lower): one range of entries_system_after_horizon either way
    "balance_checkpoints_exact": f"""
        SELECT w.id, c.horizon_xact::text, c.horizon_id, c.balance, c.entry_count,
               coalesce(r.balance, 0) + d.total, coalesce(r.entry_count, 0) + d.legs
          FROM ledger.wallets w CROSS JOIN ledger.balance_horizon b
          LEFT JOIN ledger.balance_checkpoints c ON c.wallet_id = w.id
          LEFT JOIN ledger.reconciliation_system_totals r ON r.wallet_id = w.id
          CROSS JOIN LATERAL (
            SELECT coalesce(sum(CASE WHEN (e.created_xact, e.transaction_id) > {_AFTER}
                                     THEN e.amount ELSE -e.amount END), 0) AS total,
                   coalesce(sum(CASE WHEN (e.created_xact, e.transaction_id) > {_AFTER} THEN 1 ELSE -1 END), 0) AS legs
              FROM ledger.entries e
             WHERE e.wallet_id = w.id AND e.balance_after IS NULL
               AND (((e.created_xact, e.transaction_id) > {_AFTER}
                     AND (e.created_xact, e.transaction_id) <= (b.after_xact, b.after_id))
                    OR ((e.created_xact, e.transaction_id) > (b.after_xact, b.after_id)
                        AND (e.created_xact, e.transaction_id) <= {_AFTER}))) d
         WHERE w.kind = 'system'
           AND (coalesce(c.balance, 0) <> coalesce(r.balance, 0) + d.total
                OR coalesce(c.entry_count, 0) <> coalesce(r.entry_count, 0) + d.legs
                OR (c.wallet_id IS NOT NULL AND (c.horizon_xact, c.horizon_id) <> (b.after_xact, b.after_id)))""",
    "lot_remaining_equals_movements": f"""{_NEW}
        SELECT l.id, l.remaining, coalesce(sum(m.amount), 0) FROM ledger.lots l
          LEFT JOIN ledger.lot_movements m ON m.lot_id = l.id
         WHERE l.id IN (SELECT n.lot_id FROM new_t t JOIN ledger.lot_movements n ON n.transaction_id = t.id)
         GROUP BY l.id, l.remaining HAVING l.remaining <> coalesce(sum(m.amount), 0)""",
    "lot_movements_within_entries": f"""{_NEW}
        SELECT m.transaction_id, l.wallet_id, sum(m.amount), e.amount
          FROM new_t t JOIN ledger.lot_movements m ON m.transaction_id = t.id JOIN ledger.lots l ON l.id = m.lot_id
          LEFT JOIN ledger.entries e ON e.transaction_id = m.transaction_id AND e.wallet_id = l.wallet_id
         GROUP BY m.transaction_id, l.wallet_id, e.amount
        HAVING e.amount IS NULL OR sign(sum(m.amount)) <> sign(e.amount) OR abs(sum(m.amount)) > abs(e.amount)""",
    "breakage_only_from_expiry": f"""{_NEW}
        SELECT e.transaction_id, t.action FROM new_t t JOIN ledger.entries e ON e.transaction_id = t.id
          JOIN ledger.wallets w ON w.id = e.wallet_id AND w.kind = 'system' AND w.system_role = 'breakage'
          LEFT JOIN ledger.transactions o ON o.id = t.voids_transaction_id
         WHERE t.action NOT IN ('expiry', 'dormant_breakage')
           AND NOT (t.action = 'void' AND o.action = 'dormant_breakage')""",
    "expiry_only_of_due_lots": f"""{_NEW}
        SELECT t.id, m.lot_id, l.expires_at, t.created_at FROM new_t t
          LEFT JOIN ledger.lot_movements m ON m.transaction_id = t.id AND m.amount < 0
          LEFT JOIN ledger.lots l ON l.id = m.lot_id
         WHERE t.action = 'expiry'
           AND (l.id IS NULL OR l.wallet_id <> t.wallet_id OR l.expires_at > t.created_at)""",
    # a wallet's lot balance moves only with its lots (db/schema/60_lots.sql), so only
    # the wallets the new transactions touched, each summed over its own lots
    # (lots_by_wallet): one untouched since the checkpoint is the full run's to check
    "lot_balance_equals_lots": f"""{_NEW}
        SELECT w.id, w.lot_balance, coalesce(s.total, 0) FROM ledger.wallets w
          CROSS JOIN LATERAL (SELECT sum(l.remaining) AS total FROM ledger.lots l WHERE l.wallet_id = w.id) s
         WHERE w.id IN (SELECT e.wallet_id FROM new_t t JOIN ledger.entries e ON e.transaction_id = t.id
                        UNION SELECT l.wallet_id FROM new_t t JOIN ledger.lot_movements m ON m.transaction_id = t.id
                                JOIN ledger.lots l ON l.id = m.lot_id)
           AND w.lot_balance <> coalesce(s.total, 0)""",
    "spend_counter_equals_charges": f"""{_NEW}
        SELECT c.wallet_id, c.period, c.period_start, c.spent, coalesce(sum(g.amount), 0)
          FROM ledger.spend_counters c
          LEFT JOIN ledger.spend_charges g
            ON (g.wallet_id, g.period, g.period_start) = (c.wallet_id, c.period, c.period_start)
         WHERE (c.wallet_id, c.period, c.period_start) IN
               (SELECT n.wallet_id, n.period, n.period_start FROM new_t t JOIN ledger.spend_charges n
                  ON n.transaction_id = t.id)
         GROUP BY 1, 2, 3, 4 HAVING c.spent <> coalesce(sum(g.amount), 0)""",
    # each transaction's legs by an index probe: a join of new_t with its grouped legs
    # was planned as a nested loop over both (the CTE has no statistics), quadratic in
    # what is new: 1.3M new transactions ran past 90 s, and a young ledger's first run
    # past pytest's 300 s
    "entries_follow_posting_rule": f"""{_NEW}
        SELECT t.id, t.action, r.breach FROM new_t t
          CROSS JOIN LATERAL (SELECT array_agg(e.wallet_id) AS wallets, array_agg(e.amount) AS amounts
                                FROM ledger.entries e WHERE e.transaction_id = t.id) e
          CROSS JOIN LATERAL ledger.posting_rule_breach(t.action, t.asset_code, t.amount, t.wallet_id,
                               t.counterparty_wallet_id, t.metadata, t.voids_transaction_id, e.wallets, e.amounts,
                               p_pool_may_pay => true) AS r(breach)
         WHERE r.breach IS NOT NULL""",
    # an entry that names no transaction is not reached from new_t: the full run's
    "references_exist": f"""{_NEW}
        SELECT 'entry', e.id, e.transaction_id, e.wallet_id, e.asset_code FROM new_t t
          JOIN ledger.entries e ON e.transaction_id = t.id
         WHERE NOT EXISTS (SELECT 1 FROM ledger.wallets w WHERE w.id = e.wallet_id AND w.asset_code = e.asset_code)
        UNION ALL
        SELECT 'transaction', NULL, t.id, t.wallet_id, t.asset_code FROM new_t t
         WHERE NOT EXISTS (SELECT 1 FROM ledger.assets a WHERE a.code = t.asset_code)""",
    "entry_commit_order_is_its_transactions": f"""{_NEW}
        SELECT e.id, e.transaction_id FROM new_t t JOIN ledger.entries e ON e.transaction_id = t.id
         WHERE e.created_xact <> t.created_xact""",
    **{name: INVARIANTS[name] for name in _STATE_CHECKS},
}

_EXAMINED = f"""{_NEW}
    SELECT (SELECT count(*) FROM new_t),
           (SELECT count(*) FROM new_t t JOIN ledger.entries e ON e.transaction_id = t.id),
           (SELECT count(*) FROM new_t t JOIN ledger.lot_movements m ON m.transaction_id = t.id),
           (SELECT count(*) FROM new_t t JOIN ledger.spend_charges g ON g.transaction_id = t.id),
           (SELECT count(*) FROM ledger.wallets)"""
_EXAMINED_ALL = """
    SELECT (SELECT count(*) FROM ledger.transactions), (SELECT count(*) FROM ledger.entries),
           (SELECT count(*) FROM ledger.lot_movements), (SELECT count(*) FROM ledger.spend_charges),
           (SELECT count(*) FROM ledger.wallets)"""
_COUNTED = ("transactions", "entries", "lot_movements", "spend_charges", "wallets")


def checkpoint(run: Run) -> tuple[str, int]:
    """Where the checkpoint stands: (created_xact as text, transaction id)."""
    xact, transaction_id = run("SELECT after_xact::text, after_id FROM ledger.reconciliation_checkpoint")[0]
    return xact, transaction_id


def find_violations_after(run: Run, after: tuple[str, int]) -> dict[str, list[list[Any]]]:
    """Every invariant that fails, with up to 10 offending rows each, for the ledger
    after the checkpoint `after` and the state as it is."""
    found = {}
    for name, sql in INCREMENTAL.items():
        rows = run(sql + " LIMIT 10", hx=after[0], hid=after[1]) if ":hx" in sql else run(sql + " LIMIT 10")
        if rows:
            found[name] = rows
    return found


def examined(run: Run, after: tuple[str, int] | None) -> dict[str, int]:
    """The rows a run reads: those after the checkpoint, or (None) all of them."""
    row = run(_EXAMINED_ALL)[0] if after is None else run(_EXAMINED, hx=after[0], hid=after[1])[0]
    return dict(zip(_COUNTED, row, strict=True))


def advance(run: Run, after: tuple[str, int]) -> tuple[str, int, int]:
    """Move the checkpoint from `after` to the last transaction final in this snapshot;
    (its created_xact, its id, how many transactions it passed)."""
    xact, transaction_id, taken = run(
        "SELECT after_xact::text, after_id, taken FROM ledger.advance_reconciliation(CAST(:hx AS xid8), :hid)",
        hx=after[0],
        hid=after[1],
    )[0]
    return xact, transaction_id, taken
