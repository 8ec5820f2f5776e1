"""The ledger's invariants as queries: each returns the rows that break one.

Run after every integration test and by `python -m common.reconcile`. An empty result
for all of them is the proof that the cached balances and the double entry hold.

The checks of each transaction by itself (its legs against its action's rule) can start
after a checkpoint: a transaction checked once is append-only, so after each test only
the transactions it posted need the rule's comparison, which is most of a whole run's
cost on a large ledger. `python -m common.reconcile` checks every transaction.
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
    # Each customer wallet's cache is its last entry's running balance; a wallet without
    # entries holds nothing and counts none. Its entry count otherwise is checked per
    # asset by the incremental run, per wallet only by the full one (above).
    "running_balance_matches_cache": """
        SELECT w.id, w.balance, last.balance_after, w.entry_count FROM ledger.wallets w
          LEFT JOIN LATERAL (SELECT e.id, e.balance_after FROM ledger.entries e WHERE e.wallet_id = w.id
                              ORDER BY e.id DESC LIMIT 1) last ON true
         WHERE w.kind = 'customer'
           AND CASE WHEN last.id IS NULL THEN w.balance <> 0 OR w.entry_count <> 0
                    ELSE last.balance_after IS DISTINCT FROM w.balance END""",
    "customer_balance_within_limit": """
        SELECT id, balance, credit_limit FROM ledger.wallets
         WHERE kind = 'customer' AND balance < -credit_limit""",
    "running_balance_only_on_customer_entries": """
        SELECT e.id FROM ledger.entries e JOIN ledger.wallets w ON w.id = e.wallet_id
         WHERE (w.kind = 'customer') <> (e.balance_after IS NOT NULL)""",
    # A system account's checkpoint is the sum and count of its entries at or below the
    # horizon, and stands at the horizon; a system account without one has none there
    # (db/schema/32_balance_checkpoints.sql). Reads add the entries after it.
    "balance_checkpoints_exact": """
        SELECT w.id, c.horizon_xact::text, c.horizon_id, c.balance, c.entry_count, s.total, s.legs
          FROM ledger.wallets w CROSS JOIN ledger.balance_horizon h
          LEFT JOIN ledger.balance_checkpoints c ON c.wallet_id = w.id
          CROSS JOIN LATERAL (SELECT coalesce(sum(e.amount), 0) AS total, count(*) AS legs FROM ledger.entries e
                               WHERE e.wallet_id = w.id AND e.balance_after IS NULL
                                 AND (e.created_xact, e.transaction_id) <= (h.after_xact, h.after_id)) s
         WHERE w.kind = 'system'
           AND (coalesce(c.balance, 0) <> s.total OR coalesce(c.entry_count, 0) <> s.legs
                OR (c.wallet_id IS NOT NULL AND (c.horizon_xact, c.horizon_id) <> (h.after_xact, h.after_id)))""",
    # The incremental reconciliation's totals are the sums of the entries at or below its
    # checkpoint (db/schema/33_reconciliation_checkpoint.sql): per asset for customer
    # entries, per system account for the rest.
    "reconciliation_asset_totals_exact": """
        SELECT a.code, c.customer_sum, c.customer_entries, s.total, s.legs
          FROM ledger.assets a CROSS JOIN ledger.reconciliation_checkpoint k
          LEFT JOIN ledger.reconciliation_asset_totals c ON c.asset_code = a.code
          LEFT JOIN (SELECT e.asset_code, sum(e.amount) AS total, count(*) AS legs
                       FROM ledger.reconciliation_checkpoint k2
                       JOIN ledger.transactions t ON (t.created_xact, t.id) <= (k2.after_xact, k2.after_id)
                       JOIN ledger.entries e ON e.transaction_id = t.id AND e.balance_after IS NOT NULL
                      GROUP BY e.asset_code) s ON s.asset_code = a.code
         WHERE coalesce(c.customer_sum, 0) <> coalesce(s.total, 0)
            OR coalesce(c.customer_entries, 0) <> coalesce(s.legs, 0)
            OR (c.asset_code IS NOT NULL AND (c.horizon_xact, c.horizon_id) <> (k.after_xact, k.after_id))""",
    "reconciliation_system_totals_exact": """
        SELECT w.id, c.balance, c.entry_count, s.total, s.legs
          FROM ledger.wallets w CROSS JOIN ledger.reconciliation_checkpoint k
          LEFT JOIN ledger.reconciliation_system_totals c ON c.wallet_id = w.id
          LEFT JOIN (SELECT e.wallet_id, sum(e.amount) AS total, count(*) AS legs
                       FROM ledger.reconciliation_checkpoint k2
                       JOIN ledger.transactions t ON (t.created_xact, t.id) <= (k2.after_xact, k2.after_id)
                       JOIN ledger.entries e ON e.transaction_id = t.id AND e.balance_after IS NULL
                      GROUP BY e.wallet_id) s ON s.wallet_id = w.id
         WHERE w.kind = 'system'
           AND (coalesce(c.balance, 0) <> coalesce(s.total, 0) OR coalesce(c.entry_count, 0) <> coalesce(s.legs, 0)
                OR (c.wallet_id IS NOT NULL AND (c.horizon_xact, c.horizon_id) <> (k.after_xact, k.after_id)))""",
    # Lots: each lot's remaining amount is the sum of its movements, a wallet's
    # lot_balance the sum of its lots, and the non-expiring rest within the limit.
    "lot_remaining_equals_movements": """
        SELECT l.id, l.remaining, coalesce(sum(m.amount), 0) FROM ledger.lots l
          LEFT JOIN ledger.lot_movements m ON m.lot_id = l.id
         GROUP BY l.id, l.remaining HAVING l.remaining <> coalesce(sum(m.amount), 0)""",
    "lot_balance_equals_lots": """
        SELECT w.id, w.lot_balance, coalesce(s.total, 0) FROM ledger.wallets w
          LEFT JOIN (SELECT wallet_id, sum(remaining) AS total FROM ledger.lots GROUP BY wallet_id) s
            ON s.wallet_id = w.id
         WHERE w.lot_balance <> coalesce(s.total, 0)""",
    "non_expiring_balance_within_limit": """
        SELECT id, balance, lot_balance, credit_limit FROM ledger.wallets
         WHERE kind = 'customer' AND balance - lot_balance < -credit_limit""",
    # Lot movements follow the money: within a transaction, what a wallet's lots gain
    # or lose has the sign of its entry and is no more than it.
    "lot_movements_within_entries": """
        SELECT m.transaction_id, l.wallet_id, sum(m.amount), e.amount
          FROM ledger.lot_movements m JOIN ledger.lots l ON l.id = m.lot_id
          LEFT JOIN ledger.entries e ON e.transaction_id = m.transaction_id AND e.wallet_id = l.wallet_id
         GROUP BY m.transaction_id, l.wallet_id, e.amount
        HAVING e.amount IS NULL OR sign(sum(m.amount)) <> sign(e.amount) OR abs(sum(m.amount)) > abs(e.amount)""",
    # Breakage receives expired credit and a dormant wallet's balance under a breakage
    # policy (docs/dormancy.md), and gives back only the latter, at its reactivation.
    "breakage_only_from_expiry": """
        SELECT e.transaction_id, t.action FROM ledger.entries e
          JOIN ledger.wallets w ON w.id = e.wallet_id AND w.kind = 'system' AND w.system_role = 'breakage'
          JOIN ledger.transactions t ON t.id = e.transaction_id
          LEFT JOIN ledger.transactions o ON o.id = t.voids_transaction_id
         WHERE t.action NOT IN ('expiry', 'dormant_breakage')
           AND NOT (t.action = 'void' AND o.action = 'dormant_breakage')""",
    # An expiry empties a lot of its own wallet that was due when it posted: what the
    # expiry job does, never a lot drained early into breakage (ledger.commit_posting()
    # refuses one; this names one written around it).
    "expiry_only_of_due_lots": """
        SELECT t.id, m.lot_id, l.expires_at, t.created_at FROM ledger.transactions t
          LEFT JOIN ledger.lot_movements m ON m.transaction_id = t.id AND m.amount < 0
          LEFT JOIN ledger.lots l ON l.id = m.lot_id
         WHERE t.action = 'expiry'
           AND (l.id IS NULL OR l.wallet_id <> t.wallet_id OR l.expires_at > t.created_at)""",
    # Spend counters: each equals the charges recorded against it.
    "spend_counter_equals_charges": """
        SELECT c.wallet_id, c.period, c.period_start, c.spent, coalesce(sum(g.amount), 0)
          FROM ledger.spend_counters c
          LEFT JOIN ledger.spend_charges g
            ON (g.wallet_id, g.period, g.period_start) = (c.wallet_id, c.period, c.period_start)
         GROUP BY 1, 2, 3, 4 HAVING c.spent <> coalesce(sum(g.amount), 0)""",
    # Every transaction's entries are what its action's rule gives: the rule that
    # ledger.commit_posting() enforces (db/schema/65_posting_rules.sql), so a balanced
    # posting written around it under a misleading action (a `usage` that pays a
    # customer out of revenue) is named here. A usage of a tree's member may show the
    # tree's root as its payer (a shared pool). It reads every transaction and entry once
    # (after the checkpoint, SINCE).
    "entries_follow_posting_rule": """
        SELECT t.id, t.action, r.breach FROM ledger.transactions t
          LEFT JOIN (SELECT transaction_id, array_agg(wallet_id) AS wallets, array_agg(amount) AS amounts
                       FROM ledger.entries WHERE transaction_id > {SINCE} GROUP BY transaction_id) e
            ON e.transaction_id = t.id
          CROSS JOIN LATERAL ledger.posting_rule_breach(t.action, t.asset_code, t.amount, t.wallet_id,
                               t.counterparty_wallet_id, t.metadata, t.voids_transaction_id, e.wallets, e.amounts,
                               p_pool_may_pay => true) AS r(breach)
         WHERE t.id > {SINCE} AND r.breach IS NOT NULL""",
    # The references the guards hold in place of foreign keys (migration 0019,
    # db/schema/20_guards.sql): each entry's transaction, and its wallet with the entry's
    # asset; each transaction's asset; each outbox row's transaction. After the
    # checkpoint, SINCE.
    "references_exist": """
        SELECT 'entry', e.id, e.transaction_id, e.wallet_id, e.asset_code FROM ledger.entries e
         WHERE e.transaction_id > {SINCE}
           AND (NOT EXISTS (SELECT 1 FROM ledger.transactions t WHERE t.id = e.transaction_id)
                OR NOT EXISTS (SELECT 1 FROM ledger.wallets w WHERE w.id = e.wallet_id AND w.asset_code = e.asset_code))
        UNION ALL
        SELECT 'transaction', NULL, t.id, t.wallet_id, t.asset_code FROM ledger.transactions t
         WHERE t.id > {SINCE} AND NOT EXISTS (SELECT 1 FROM ledger.assets a WHERE a.code = t.asset_code)
        UNION ALL
        SELECT 'outbox', NULL, o.transaction_id, NULL, NULL FROM ledger.outbox o
         WHERE o.transaction_id > {SINCE}
           AND NOT EXISTS (SELECT 1 FROM ledger.transactions t WHERE t.id = o.transaction_id)""",
    # An entry's place in commit order is its transaction's (the balance checkpoints
    # read entries after a horizon by it); after the checkpoint, SINCE.
    "entry_commit_order_is_its_transactions": """
        SELECT e.id, e.transaction_id FROM ledger.entries e JOIN ledger.transactions t ON t.id = e.transaction_id
         WHERE e.transaction_id > {SINCE} AND e.created_xact <> t.created_xact""",
    # Each customer entry's running balance is the previous one's plus its amount (the
    # first one's, its amount): with the last one equal to the cached balance, the
    # incremental reconciliation's proof that the cache is the sum (docs/operations.md);
    # after the checkpoint, SINCE.
    "running_balance_continuous": """
        SELECT e.id, e.wallet_id, e.amount, e.balance_after, p.balance_after FROM ledger.entries e
          LEFT JOIN LATERAL (SELECT p.balance_after FROM ledger.entries p
                              WHERE p.wallet_id = e.wallet_id AND p.id < e.id ORDER BY p.id DESC LIMIT 1) p ON true
         WHERE e.transaction_id > {SINCE} AND e.balance_after IS NOT NULL
           AND e.balance_after <> coalesce(p.balance_after, 0) + e.amount""",
    # Trees: a member's path is its parent's path plus itself.
    "tree_paths_consistent": """
        SELECT w.id FROM ledger.wallets w LEFT JOIN ledger.wallets p ON p.id = w.parent_id
         WHERE w.path[cardinality(w.path)] <> w.id OR w.root_id <> w.path[1]
            OR (w.parent_id IS NULL AND cardinality(w.path) <> 1)
            OR (w.parent_id IS NOT NULL AND w.path <> p.path || w.id)""",
}


def find_violations(run: Callable[[str], list[list[Any]]], since_transaction_id: int = 0) -> dict[str, list[list[Any]]]:
    """Every invariant that fails, with up to 10 offending rows each; the checks of each
    transaction by itself only for transactions after `since_transaction_id`."""
    found = {}
    for name, sql in INVARIANTS.items():
        rows = run(sql.replace("{SINCE}", str(int(since_transaction_id))) + " LIMIT 10")
        if rows:
            found[name] = rows
    return found
