"""The ledger in Postgres: postings through ledger.commit_posting(), wallets, assets, history.

Every statement is prepared once per connection and runs in autocommit: a posting is
one call to ledger.commit_posting(), so it needs one round trip and no client-side transaction.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pg8000.exceptions import DatabaseError

from common import timing
from common.adapters.postgres import RETRYABLE_SQLSTATES, Pool, error_fields, run_with_retry, translate
from common.errors import InvalidRequest, NotFound, Refused
from common.group_commit import GroupCommit
from common.ledger.postings import Posting, SystemAccounts

if TYPE_CHECKING:  # annotations only: the command models load with the first parsed body
    from common.ledger import commands

MAX_POSTINGS_PER_CALL = 60
# replayed, transaction_id, created_at, effective_at, balances ("12,,40"), original,
# leg wallets when the ledger chose the payer ("7,3", a shared pool) or None
PostedRow = list[Any]

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
# turns it into breakage), and each spend limit with what this period has used.
WALLET_SELECT = """
SELECT w.id, w.owner_id, w.asset_code, a.scale, w.kind, w.system_role, w.model, w.status,
       CASE WHEN w.kind = 'system'
            THEN (SELECT coalesce(sum(e.amount), 0) FROM ledger.entries e WHERE e.wallet_id = w.id)
            ELSE w.balance END,
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
POST_MANY_SQL = """
SELECT item, replayed, transaction_id, created_at, effective_at, balances, original, leg_wallets,
       error_sqlstate, error_message, error_detail, error_constraint
  FROM ledger.commit_postings(CAST(:batch AS jsonb))
"""
POST_SQL = """
SELECT replayed, transaction_id, created_at, effective_at, array_to_string(balances, ',', ''), original,
       array_to_string(leg_wallets, ',')
  FROM ledger.commit_posting(:key, :request_hash, :action, :asset, :amount, :wallet_id, :counterparty_wallet_id,
                   CAST(:leg_wallets AS bigint[]), CAST(:leg_amounts AS bigint[]), :external_ref, :usage_id,
                   :product, :description, :voids_transaction_id, CAST(:metadata AS jsonb), NULL,
                   CAST(:lot_expires_at AS timestamptz))
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


class PostgresLedger:
    def __init__(
        self, pool: Pool, attempts: int = 5, group_commit_max: int = 1, group_commit_in_flight: int = 1
    ) -> None:
        """`group_commit_max` > 1 lets postings that arrive while `group_commit_in_flight`
        calls are at the database go together (see common/group_commit.py)."""
        self._pool = pool
        self._attempts = attempts
        self._group: GroupCommit[dict[str, Any], PostedRow] | None = None
        if group_commit_max > 1:
            # Each posting in a batch is a subtransaction; past 64 in one transaction
            # Postgres' snapshots overflow and every session slows down.
            batch = min(group_commit_max, MAX_POSTINGS_PER_CALL)
            self._group = GroupCommit(self._post_one, self._post_many, batch, group_commit_in_flight)
        self._system_accounts: dict[str, SystemAccounts] = {}
        self._system_lock = threading.Lock()

    def _run(self, sql: str, **params: Any) -> list[list[Any]]:
        return run_with_retry(self._pool, lambda con: con.run(sql, **params), self._attempts)

    def _run_untimed(self, sql: str, **params: Any) -> list[list[Any]]:
        """For postings, whose span post() times (a batch runs in one request's thread)."""
        return run_with_retry(self._pool, lambda con: con.run(sql, **params), self._attempts, span="")

    # Postings -------------------------------------------------------------

    def system_accounts(self, asset: str) -> SystemAccounts:
        """System wallets never change once an asset exists, so they are cached per process."""
        accounts = self._system_accounts.get(asset)
        if accounts is None:
            rows = self._run(
                "SELECT system_role, id FROM ledger.wallets WHERE kind = 'system' AND asset_code = :asset", asset=asset
            )
            if not rows:
                raise Refused(f"unknown asset {asset}", code="unknown_asset", details={"asset": asset})
            roles = dict(rows)
            accounts = SystemAccounts(
                asset, roles["funding"], roles["revenue"], roles["promotion"], roles["breakage"], roles["discount"]
            )
            with self._system_lock:
                self._system_accounts[asset] = accounts
        return accounts

    def post(self, posting: Posting, key: str, request_hash: str) -> tuple[dict[str, Any], bool]:
        """Post once per idempotency key; returns (transaction, replayed)."""
        params = {
            "key": key,
            "request_hash": request_hash,
            "action": posting.action,
            "asset": posting.asset,
            "amount": posting.amount,
            "wallet_id": posting.wallet_id,
            "counterparty_wallet_id": posting.counterparty_wallet_id,
            "leg_wallets": [leg.wallet_id for leg in posting.legs],
            "leg_amounts": [leg.amount for leg in posting.legs],
            "external_ref": posting.external_ref,
            "usage_id": posting.usage_id,
            "product": posting.product,
            "description": posting.description,
            "voids_transaction_id": posting.voids_transaction_id,
            "metadata": posting.metadata or {},
            "lot_expires_at": posting.lot_expires_at.isoformat() if posting.lot_expires_at else None,
        }
        with timing.span("postgres"):  # waiting for a batch included
            row = self._group.submit(params) if self._group is not None else self._post_one(params)
        replayed, transaction_id, created_at, effective_at, balances, original, payers = row
        if replayed:
            return original, True
        wallets = [int(wallet) for wallet in payers.split(",")] if payers else [leg.wallet_id for leg in posting.legs]
        return render(posting, key, transaction_id, created_at, effective_at, _parse_balances(balances), wallets), False

    def _post_one(self, params: dict[str, Any]) -> PostedRow:
        return self._run_untimed(
            POST_SQL,
            **{
                **params,
                # Array literals as text: Postgres parses them cheaper than the driver encodes lists.
                "leg_wallets": _array_literal(params["leg_wallets"]),
                "leg_amounts": _array_literal(params["leg_amounts"]),
                "metadata": json.dumps(params["metadata"]) if params["metadata"] else "{}",
            },
        )[0]

    def _post_many(self, batch: Sequence[dict[str, Any]]) -> list[PostedRow | Exception]:
        """Several postings in one call to ledger.commit_postings(): one outcome each,
        in order. A posting that failed inside the batch comes back as the error a
        posting of its own would have raised; a retryable one (deadlock, serialization)
        is posted again on its own, with retries."""
        numbered = [{"item": i, **params} for i, params in enumerate(batch)]
        rows = self._run_untimed(POST_MANY_SQL, batch=json.dumps(numbered))
        outcomes: list[PostedRow | Exception] = []
        for params, (item, *posted, sqlstate, message, detail, constraint) in zip(batch, rows, strict=True):
            if item != len(outcomes):
                raise RuntimeError("ledger.commit_postings() answered out of order")
            if sqlstate is None:
                outcomes.append(posted)
            elif sqlstate in RETRYABLE_SQLSTATES:
                try:
                    outcomes.append(self._post_one(params))
                except Exception as error:  # noqa: BLE001 - this item's own outcome
                    outcomes.append(error)
            else:
                raw = DatabaseError({"S": "ERROR", "C": sqlstate, "M": message, "D": detail, "n": constraint})
                translated = translate(raw)
                outcomes.append(translated if translated is not raw else raw)
        return outcomes

    def posted_under(self, key: str, request_hash: str) -> dict[str, Any] | None:
        """The transaction posted under an idempotency key, as a replay renders it, or
        None when nothing was. The same key with another request is refused."""
        rows = self._run(
            "SELECT request_hash, id, ledger.transaction_json(id)"
            " FROM ledger.transactions WHERE idempotency_key = :key",
            key=key,
        )
        if not rows:
            return None
        stored_hash, transaction_id, transaction = rows[0]
        if stored_hash != request_hash:
            raise Refused(
                "this Idempotency-Key was used with a different request",
                code="idempotency_key_reused",
                details={"transaction_id": transaction_id},
            )
        return transaction

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

    # Assets ---------------------------------------------------------------

    def create_asset(self, cmd: commands.CreateAsset) -> dict[str, Any]:
        try:
            self._run(
                "SELECT ledger.create_asset(:code, CAST(:scale AS smallint), :description)",
                code=cmd.code,
                scale=cmd.scale,
                description=cmd.description,
            )
        except DatabaseError as error:
            if error_fields(error).get("C") == "23505":
                raise Refused(f"asset {cmd.code} already exists", code="asset_exists") from error
            raise
        return {"code": cmd.code, "scale": cmd.scale, "description": cmd.description}

    def list_assets(self) -> list[dict[str, Any]]:
        rows = self._run("SELECT code, scale, description FROM ledger.assets ORDER BY code")
        return [dict(zip(("code", "scale", "description"), row, strict=True)) for row in rows]

    # Wallets --------------------------------------------------------------

    def create_wallet(self, cmd: commands.CreateWallet) -> dict[str, Any]:
        if cmd.parent_id is not None:
            self._check_parent(cmd)
        try:
            rows = self._run(
                "INSERT INTO ledger.wallets"
                " (owner_id, asset_code, model, credit_limit, metadata, parent_id, spend_mode)"
                " VALUES (:owner_id, :asset, :model, :credit_limit, CAST(:metadata AS jsonb), :parent_id, :spend_mode)"
                " RETURNING id",
                owner_id=cmd.owner_id,
                asset=cmd.asset,
                model=cmd.model,
                credit_limit=cmd.credit_limit,
                metadata=dict(cmd.metadata),
                parent_id=cmd.parent_id,
                spend_mode=cmd.spend_mode,
            )
        except DatabaseError as error:
            fields = error_fields(error)
            if fields.get("n") == "wallets_tree_depth":
                raise Refused("a tree is at most 8 levels deep", code="tree_too_deep") from error
            if fields.get("C") == "23503" and fields.get("n") != "wallets_parent":
                raise Refused(
                    f"unknown asset {cmd.asset}", code="unknown_asset", details={"asset": cmd.asset}
                ) from error
            raise
        return self.get_wallet(rows[0][0])

    def _check_parent(self, cmd: commands.CreateWallet) -> None:
        """Clear refusals for what the database's tree constraints would refuse anyway."""
        rows = self._run("SELECT asset_code, model, kind FROM ledger.wallets WHERE id = :id", id=cmd.parent_id)
        if not rows:
            raise Refused(
                f"parent wallet {cmd.parent_id} does not exist",
                code="parent_not_found",
                details={"parent_id": cmd.parent_id},
            )
        asset, model, kind = rows[0]
        if kind != "customer" or model != cmd.model or asset != cmd.asset:
            raise Refused(
                "a member's parent has the member's asset and model (enterprise or reseller)",
                code="parent_mismatch",
                details={"parent_id": cmd.parent_id, "parent_asset": asset, "parent_model": model},
            )

    def parent_of(self, wallet_id: int) -> int:
        """The parent of a tree member; allocate and reclaim move money along this edge."""
        rows = self._run("SELECT parent_id FROM ledger.wallets WHERE id = :id", id=wallet_id)
        if not rows:
            raise NotFound(
                f"wallet {wallet_id} does not exist", code="wallet_not_found", details={"wallet_id": wallet_id}
            )
        if rows[0][0] is None:
            raise Refused(
                f"wallet {wallet_id} is the root of its tree or a personal wallet: it has no parent",
                code="not_a_child",
                details={"wallet_id": wallet_id},
            )
        return int(rows[0][0])

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

    def update_wallet(self, wallet_id: int, cmd: commands.UpdateWallet) -> dict[str, Any]:
        current = self.get_wallet(wallet_id)
        if current["kind"] == "system":
            raise Refused("system accounts cannot be changed", code="system_account")
        if current["status"] == "closed" and cmd.status not in (None, "closed"):
            raise Refused("a closed wallet stays closed", code="wallet_closed", details={"wallet_id": wallet_id})
        if cmd.spend_mode is not None and current["spend_mode"] is None:
            raise Refused(
                "only the root of an enterprise or reseller tree has a spend mode",
                code="not_a_root",
                details={"wallet_id": wallet_id},
            )
        if cmd.credit_limit and current["parent_id"] is not None:
            raise Refused(
                "a member spends what it is allocated: only a root has a credit limit",
                code="member_credit_limit",
                details={"wallet_id": wallet_id},
            )
        try:
            self._run(
                "UPDATE ledger.wallets SET status = coalesce(CAST(:status AS text), status),"
                " credit_limit = coalesce(CAST(:credit_limit AS bigint), credit_limit),"
                " spend_mode = coalesce(CAST(:spend_mode AS text), spend_mode), updated_at = now()"
                " WHERE id = :id",
                status=cmd.status,
                credit_limit=cmd.credit_limit,
                spend_mode=cmd.spend_mode,
                id=wallet_id,
            )
            for period, amount in sorted((cmd.spend_limits or {}).items()):
                if amount is None:
                    self._run(
                        "DELETE FROM ledger.spend_limits WHERE wallet_id = :id AND period = :p", id=wallet_id, p=period
                    )
                else:
                    self._run(
                        "INSERT INTO ledger.spend_limits (wallet_id, period, amount) VALUES (:id, :p, :a)"
                        " ON CONFLICT (wallet_id, period) DO UPDATE SET amount = excluded.amount, updated_at = now()",
                        id=wallet_id,
                        p=period,
                        a=amount,
                    )
        except DatabaseError as error:
            constraint = error_fields(error).get("n")
            if constraint == "wallets_closed_is_empty":
                raise Refused(
                    "only an empty wallet can be closed", code="wallet_not_empty", details={"wallet_id": wallet_id}
                ) from error
            if constraint == "wallets_balance_within_limit":
                raise Refused(
                    "the balance is below the new credit limit",
                    code="credit_limit_below_balance",
                    details={"wallet_id": wallet_id},
                ) from error
            raise
        return self.get_wallet(wallet_id)

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

    def extend_lot(self, key: str, lot_id: int, cmd: commands.ExtendLot) -> tuple[dict[str, Any], bool]:
        """Move a lot's expiry later, once per idempotency key; returns (lot, replayed)."""
        rows = self._run(
            "SELECT extension_id, replayed FROM ledger.extend_lot(:k, :id, CAST(:at AS timestamptz), :reason)",
            k=key,
            id=lot_id,
            at=cmd.expires_at.isoformat(),
            reason=cmd.reason,
        )
        return self.get_lot(lot_id), bool(rows[0][1])

    def expire_lots(self, limit: int, after: tuple[str, int] | None) -> list[dict[str, Any]]:
        """Turn up to `limit` expired lots after `after` (expires_at, lot id) into
        breakage; one outcome per lot, in expiry order."""
        at, lot_id = after or ("-infinity", 0)
        rows = self._run(
            "SELECT lot_id, expires_at, transaction_id, wallet_id, amount, error"
            " FROM ledger.expire_lots(:n, CAST(:at AS timestamptz), :id)",
            n=limit,
            at=at,
            id=lot_id,
        )
        columns = ("lot_id", "expires_at", "transaction_id", "wallet_id", "amount", "error")
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def history(self, wallet_id: int, query: commands.HistoryQuery) -> dict[str, Any]:
        self.get_wallet(wallet_id)
        before = _decode_cursor(query.cursor) if query.cursor else 2**63 - 1
        rows = self._run(
            HISTORY_SQL,
            wallet_id=wallet_id,
            before=before,
            action=query.action,
            from_ts=query.from_,
            to_ts=query.to,
            limit=query.limit + 1,
        )
        items = [dict(zip(HISTORY_COLUMNS, row, strict=True)) for row in rows[: query.limit]]
        next_cursor = _encode_cursor(items[-1]["entry_id"]) if len(rows) > query.limit else None
        return {"wallet_id": wallet_id, "items": items, "next_cursor": next_cursor}


def render(
    posting: Posting,
    key: str,
    transaction_id: int,
    created_at: str,
    effective_at: str,
    balances: list[int | None],
    wallets: list[int],
) -> dict[str, Any]:
    """A new transaction as ledger.transaction_json() renders a stored one (same keys,
    same values), built from the posting just sent rather than read back. `wallets` are
    the legs' wallets as posted (a shared pool's member usage is paid by the pool)."""
    return {
        "id": transaction_id,
        "action": posting.action,
        "asset": posting.asset,
        "amount": posting.amount,
        "wallet_id": posting.wallet_id,
        "counterparty_wallet_id": posting.counterparty_wallet_id,
        "idempotency_key": key,
        "external_ref": posting.external_ref,
        "usage_id": posting.usage_id,
        "product": posting.product,
        "description": posting.description,
        "voids_transaction_id": posting.voids_transaction_id,
        "metadata": posting.metadata,
        "effective_at": effective_at,
        "created_at": created_at,
        "entries": [
            {"wallet_id": wallet, "amount": leg.amount, "balance_after": balance}
            for leg, wallet, balance in zip(posting.legs, wallets, balances, strict=True)
        ],
    }


def _array_literal(values: Iterable[int]) -> str:
    return "{" + ",".join(str(value) for value in values) + "}"


def _parse_balances(text: str) -> list[int | None]:
    """Running balances sent as "12,,40" (empty: a system leg, which keeps none): the
    driver's bigint[] parser cost a tenth of a posting's client CPU."""
    return [int(value) if value else None for value in text.split(",")]


def _wallet(row: list[Any]) -> dict[str, Any]:
    wallet = dict(zip(WALLET_COLUMNS, row, strict=True))
    wallet["balance"] = int(wallet["balance"])  # a system account's derived sum is numeric: it may pass int64
    customer = wallet["kind"] == "customer"
    # spendable now: expired lots are excluded even before the expiry job runs
    wallet["available"] = wallet["balance"] - wallet["expired"] + wallet["credit_limit"] if customer else None
    return wallet


def _encode_cursor(entry_id: int) -> str:
    return base64.urlsafe_b64encode(f"e{entry_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("e"):
            raise ValueError(cursor)
        return int(text[1:])
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidRequest("cursor is not one this API returned", code="invalid_cursor") from error
