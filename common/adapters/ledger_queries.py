"""The ledger's reads: wallets with what they can spend now, their entries and lots,
tree roll-ups and members, transactions, assets.

Kept apart from the write path (common/adapters/ledger_store.py) as cosmicpython keeps
its views apart from its repository: SQL shaped straight into the API's answers, no
domain objects, nothing that writes. The service answers every read from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from common.adapters.postgres import Statements
from common.errors import NotFound

if TYPE_CHECKING:  # annotations only: the command models load with the first parsed body
    from common.ledger import commands

WALLET_COLUMNS = (
    "id",
    "owner_id",
    "asset",
    "scale",
    "kind",
    "system_role",
    "model",
    "status",
    "balance",
    "credit_limit",
    "entry_count",
    "metadata",
    "created_at",
    "updated_at",
    "parent_id",
    "root_id",
    "depth",
    "spend_mode",
    "expiring",
    "expired",
    "spend_limits",
)
# A wallet with what it can spend now: `expiring` is what its lots hold, `expired` the
# part of that already past its expiry (not spendable, even before the expiry job
# turns it into breakage), and each spend limit with what this period has used. A
# system account's balance is its checkpoint plus its entries after it
# (db/schema/32_balance_checkpoints.sql), not a sum over its whole history.
WALLET_SELECT = """
SELECT w.id, w.owner_id, w.asset_code, a.scale, w.kind, w.system_role, w.model, w.status,
       CASE WHEN w.kind = 'system' THEN ledger.system_balance(w.id) ELSE w.balance END,
       w.credit_limit, w.entry_count, w.metadata, ledger.iso_utc(w.created_at), ledger.iso_utc(w.updated_at),
       w.parent_id, w.root_id, cardinality(w.path) - 1, w.spend_mode, w.lot_balance,
       CASE WHEN w.lot_balance = 0 THEN 0 ELSE
         (SELECT coalesce(sum(l.remaining), 0)::bigint FROM ledger.lots l
           WHERE l.wallet_id = w.id AND l.remaining > 0 AND l.expires_at <= now()) END,
       (SELECT coalesce(jsonb_object_agg(s.period, jsonb_build_object(
                 'limit', s.amount, 'period_start', ledger.iso_utc(ledger.period_start(s.period, now())),
                 'spent', coalesce((SELECT c.spent FROM ledger.spend_counters c
                                     WHERE c.wallet_id = s.wallet_id AND c.period = s.period
                                       AND c.period_start = ledger.period_start(s.period, now())), 0))),
                 '{}'::jsonb)
          FROM ledger.spend_limits s WHERE s.wallet_id = w.id)
  FROM ledger.wallets w JOIN ledger.assets a ON a.code = w.asset_code
"""
LOT_COLUMNS = (
    "id",
    "wallet_id",
    "transaction_id",
    "source_lot_id",
    "amount",
    "remaining",
    "expires_at",
    "expired",
    "created_at",
)
LOT_SELECT = """
SELECT l.id, l.wallet_id, l.transaction_id, l.source_lot_id, l.amount, l.remaining, ledger.iso_utc(l.expires_at),
       l.expires_at <= now(), ledger.iso_utc(l.created_at)
  FROM ledger.lots l
"""
# A node (first row, branch NULL) and each child with the roll-up of its subtree, in
# one statement (one snapshot: an allocation committing meanwhile is counted once),
# summed on read over the subtree index (every member whose path holds the node; the
# branch is the path's next element): no parent row is written when a member acts.
ROLLUP_SQL = """
WITH node AS (
  SELECT id, owner_id, asset_code, balance, lot_balance, cardinality(path) AS depth
    FROM ledger.wallets WHERE id = :id AND kind = 'customer'
)
SELECT NULL::bigint, owner_id, asset_code, balance, balance, lot_balance, 1 FROM node
UNION ALL
SELECT * FROM (
  SELECT b.branch, c.owner_id, c.asset_code, c.balance, b.total, b.expiring, b.members
    FROM (SELECT w.path[n.depth + 1] AS branch, sum(w.balance)::bigint AS total,
                 sum(w.lot_balance)::bigint AS expiring, count(*) AS members
            FROM node n JOIN ledger.wallets w
              ON w.path @> ARRAY[n.id] AND w.parent_id IS NOT NULL AND cardinality(w.path) > n.depth
           GROUP BY 1) b
    JOIN ledger.wallets c ON c.id = b.branch
   ORDER BY b.branch) children
"""
HISTORY_SQL = """
SELECT e.id, e.amount, e.balance_after, ledger.iso_utc(e.created_at), t.id, t.action, t.amount, t.wallet_id,
       t.counterparty_wallet_id, t.external_ref, t.usage_id, t.product, t.description, t.voids_transaction_id,
       ledger.iso_utc(t.effective_at)
  FROM ledger.entries e JOIN ledger.transactions t ON t.id = e.transaction_id
 WHERE e.wallet_id = :wallet_id
   AND e.id < CAST(:before AS bigint)
   AND (CAST(:action AS text) IS NULL OR t.action = CAST(:action AS text))
   AND (CAST(:from_ts AS timestamptz) IS NULL OR e.created_at >= CAST(:from_ts AS timestamptz))
   AND (CAST(:to_ts AS timestamptz) IS NULL OR e.created_at < CAST(:to_ts AS timestamptz))
 ORDER BY e.id DESC
 LIMIT CAST(:limit AS integer)
"""
HISTORY_COLUMNS = (
    "entry_id",
    "amount",
    "balance_after",
    "created_at",
    "transaction_id",
    "action",
    "transaction_amount",
    "transaction_wallet_id",
    "counterparty_wallet_id",
    "external_ref",
    "usage_id",
    "product",
    "description",
    "voids_transaction_id",
    "effective_at",
)


class LedgerQueries(Statements):
    # Wallets --------------------------------------------------------------

    def get_wallet(self, wallet_id: int) -> dict[str, Any]:
        rows = self._run(WALLET_SELECT + " WHERE w.id = :id", id=wallet_id)
        if not rows:
            raise NotFound(
                f"wallet {wallet_id} does not exist", code="wallet_not_found", details={"wallet_id": wallet_id}
            )
        return _wallet(rows[0])

    def list_wallets(self, owner_id: str) -> list[dict[str, Any]]:
        rows = self._run(WALLET_SELECT + " WHERE w.owner_id = :owner ORDER BY w.id LIMIT 500", owner=owner_id)
        return [_wallet(row) for row in rows]

    def history(
        self, wallet_id: int, query: commands.HistoryQuery, before: int | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """A page of the wallet's entries older than entry `before` (newest first), and
        whether more follow."""
        self.get_wallet(wallet_id)
        rows = self._run(
            HISTORY_SQL,
            wallet_id=wallet_id,
            before=2**63 - 1 if before is None else before,
            action=query.action,
            from_ts=query.from_,
            to_ts=query.to,
            limit=query.limit + 1,
        )
        items = [dict(zip(HISTORY_COLUMNS, row, strict=True)) for row in rows[: query.limit]]
        return items, len(rows) > query.limit

    # Trees ------------------------------------------------------------------

    def rollup(self, wallet_id: int) -> dict[str, Any]:
        """A node's own balance and the sum over its whole subtree, with each child's."""
        rows = self._run(ROLLUP_SQL, id=wallet_id)
        if not rows or rows[0][0] is not None:
            raise NotFound(
                f"wallet {wallet_id} does not exist", code="wallet_not_found", details={"wallet_id": wallet_id}
            )
        _, owner, asset, balance, _, expiring, _ = rows[0]
        children = [
            {
                "wallet_id": branch,
                "owner_id": child_owner,
                "balance": child_balance,
                "rollup_balance": total,
                "rollup_expiring": child_expiring,
                "members": count - 1,
            }
            for branch, child_owner, _, child_balance, total, child_expiring, count in rows[1:]
        ]
        return {
            "wallet_id": wallet_id,
            "owner_id": owner,
            "asset": asset,
            "balance": balance,
            "rollup_balance": balance + sum(child["rollup_balance"] for child in children),
            "rollup_expiring": expiring + sum(child["rollup_expiring"] for child in children),
            "members": sum(child["members"] + 1 for child in children),
            "children": children,
        }

    def members(self, wallet_id: int, after: int, limit: int) -> dict[str, Any]:
        """Every wallet below a node, in id order, a page at a time: what a reseller
        (or an enterprise admin) may see, and nothing outside its tree."""
        self.get_wallet(wallet_id)
        rows = self._run(
            WALLET_SELECT + " WHERE w.path @> ARRAY[CAST(:id AS bigint)] AND w.parent_id IS NOT NULL"
            " AND w.id <> :id AND w.id > :after ORDER BY w.id LIMIT :limit",
            id=wallet_id,
            after=after,
            limit=limit + 1,
        )
        members = [_wallet(row) for row in rows[:limit]]
        return {
            "wallet_id": wallet_id,
            "members": members,
            "next_after": members[-1]["id"] if len(rows) > limit else None,
        }

    # Lots -------------------------------------------------------------------

    def lots(self, wallet_id: int, include_closed: bool) -> dict[str, Any]:
        """A wallet's per-lot breakdown: open lots (with credit left) earliest expiry
        first, or every lot it ever had; the rest of its balance never expires."""
        wallet = self.get_wallet(wallet_id)
        where = " WHERE l.wallet_id = :id" + ("" if include_closed else " AND l.remaining > 0")
        rows = self._run(LOT_SELECT + where + " ORDER BY l.expires_at, l.id LIMIT 500", id=wallet_id)
        return {
            "wallet_id": wallet_id,
            "balance": wallet["balance"],
            "available": wallet["available"],
            "expiring": wallet["expiring"],
            "expired": wallet["expired"],
            "no_expiry": wallet["balance"] - wallet["expiring"],
            "lots": [dict(zip(LOT_COLUMNS, row, strict=True)) for row in rows],
        }

    def get_lot(self, lot_id: int) -> dict[str, Any]:
        rows = self._run(LOT_SELECT + " WHERE l.id = :id", id=lot_id)
        if not rows:
            raise NotFound(f"lot {lot_id} does not exist", code="lot_not_found", details={"lot_id": lot_id})
        return dict(zip(LOT_COLUMNS, rows[0], strict=True))

    # Transactions and assets ------------------------------------------------

    def get_transaction(self, transaction_id: int) -> dict[str, Any]:
        rows = self._run(
            "SELECT ledger.transaction_json(t.id), (SELECT v.id FROM ledger.transactions v"
            " WHERE v.voids_transaction_id = t.id) FROM ledger.transactions t WHERE t.id = :id",
            id=transaction_id,
        )
        if not rows:
            raise NotFound(
                f"transaction {transaction_id} does not exist",
                code="transaction_not_found",
                details={"transaction_id": transaction_id},
            )
        return {**rows[0][0], "voided_by": rows[0][1]}

    def find_transaction(self, tenant: str, lookup: commands.TransactionLookup) -> int | None:
        """The id of the tenant's transaction posted under an idempotency key, or holding
        a business id (db/migrations/0009_business_ids.sql): each names at most one."""
        value: str | None
        if lookup.idempotency_key is not None:
            sql, value = "idempotency_key = :value", lookup.idempotency_key
        elif lookup.usage_id is not None:
            sql, value = "action = 'usage' AND usage_id = :value", lookup.usage_id
        else:
            sql, value = (
                "action IN ('topup', 'addon') AND action = :action AND external_ref = :value",
                lookup.external_ref,
            )
        rows = self._run(
            f"SELECT id FROM ledger.transactions WHERE tenant = :tenant AND {sql}",
            tenant=tenant,
            value=value,
            **({"action": lookup.action} if lookup.external_ref is not None else {}),
        )
        return int(rows[0][0]) if rows else None

    def list_assets(self) -> list[dict[str, Any]]:
        rows = self._run("SELECT code, scale, description FROM ledger.assets ORDER BY code")
        return [dict(zip(("code", "scale", "description"), row, strict=True)) for row in rows]


def _wallet(row: list[Any]) -> dict[str, Any]:
    wallet = dict(zip(WALLET_COLUMNS, row, strict=True))
    wallet["balance"] = int(wallet["balance"])  # a system account's derived sum is numeric: it may pass int64
    customer = wallet["kind"] == "customer"
    # spendable now: expired lots are excluded even before the expiry job runs
    wallet["available"] = wallet["balance"] - wallet["expired"] + wallet["credit_limit"] if customer else None
    return wallet
