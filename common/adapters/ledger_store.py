"""The ledger's money path in Postgres: postings through ledger.commit_posting() (several
at once through ledger.commit_postings() under group commit), what a retry finds under
its idempotency key, what building a posting needs (system accounts, a member's
parent), and the expiry job's breakage postings.

Every statement is prepared once per connection and runs in autocommit: a posting is
one call to ledger.commit_posting(), so it needs one round trip and no client-side transaction.
The writes that move no money are in ledger_admin.py, the reads in ledger_queries.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from pg8000.exceptions import DatabaseError

from common import timing
from common.adapters.postgres import Pool, Statements, error_fields, retry_alone, run_with_retry, translate
from common.errors import DependencyUnavailable, NotFound, OutcomeUnknown, Refused
from common.group_commit import GroupCommit
from common.intake import Decided
from common.ledger.postings import Posting, SystemAccounts

MAX_POSTINGS_PER_CALL = 60
LOCK_NOT_AVAILABLE = "55P03"  # commit_postings() waited its second for a batch's wallets
# replayed, transaction_id, created_at, effective_at, balances ("12,,40"), original,
# leg wallets when the ledger chose the payer ("7,3", a shared pool) or None
PostedRow = list[Any]

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
                   CAST(:lot_expires_at AS timestamptz), NULL, :tenant, CAST(:actor AS jsonb))
"""

# The kept refusals and the postings of a batch's usage ids (a posting outranks a
# refusal). One index lookup per id, whatever the tenant's size: the LIMIT keeps each
# lookup a lateral one, which Postgres would otherwise flatten into a join that scans
# every usage of the tenant (planned so on young statistics, and never rechecked).
USAGE_DECISIONS_SQL = """
SELECT u.usage_id, r.request_hash, NULL::bigint, r.code, r.message, r.details
  FROM jsonb_array_elements_text(CAST(:ids AS jsonb)) AS u(usage_id),
       LATERAL (SELECT * FROM ledger.usage_refusals r
                 WHERE r.tenant = :tenant AND r.usage_id = u.usage_id LIMIT 1) r
UNION ALL
SELECT u.usage_id, t.request_hash, t.id, NULL, NULL, NULL
  FROM jsonb_array_elements_text(CAST(:ids AS jsonb)) AS u(usage_id),
       LATERAL (SELECT t.request_hash, t.id FROM ledger.transactions t
                 WHERE t.tenant = :tenant AND t.action = 'usage' AND t.usage_id IS NOT NULL
                   AND t.usage_id = u.usage_id LIMIT 1) t
"""


class PostgresLedger(Statements):
    def __init__(
        self, pool: Pool, attempts: int = 5, group_commit_max: int = 1, group_commit_in_flight: int = 1
    ) -> None:
        """`group_commit_max` > 1 lets postings that arrive while `group_commit_in_flight`
        calls are at the database go together (see common/group_commit.py)."""
        super().__init__(pool, attempts)
        self._group: GroupCommit[dict[str, Any], PostedRow] | None = None
        if group_commit_max > 1:
            # Each posting in a batch is a subtransaction; past 64 in one transaction
            # Postgres' snapshots overflow and every session slows down.
            batch = min(group_commit_max, MAX_POSTINGS_PER_CALL)
            self._group = GroupCommit(
                self._post_one, self._post_many, batch, group_commit_in_flight, self._post_after_failed_batch
            )
        self._system_accounts: dict[str, SystemAccounts] = {}
        self._system_lock = threading.Lock()

    def _run_untimed(self, sql: str, **params: Any) -> list[list[Any]]:
        """For postings, whose span post() times (a batch runs in one request's thread)."""
        return run_with_retry(self._pool, lambda con: con.run(sql, **params), self._attempts, span="", posting=True)

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

    def post(
        self, posting: Posting, key: str, request_hash: str, tenant: str, actor: dict[str, Any] | None
    ) -> tuple[dict[str, Any], bool]:
        """Post once per idempotency key within the tenant; returns (transaction, replayed).
        `actor` is who posted it, kept with the transaction."""
        params = posting_params(posting, key, request_hash, tenant, actor)
        with timing.span("postgres"):  # waiting for a batch included
            row = self._group.submit(params) if self._group is not None else self._post_one(params)
        replayed, transaction_id, created_at, effective_at, balances, original, payers = row
        if replayed:
            return original, True
        wallets = [int(wallet) for wallet in payers.split(",")] if payers else [leg.wallet_id for leg in posting.legs]
        balances_after = _parse_balances(balances)
        return render(posting, key, actor, transaction_id, created_at, effective_at, balances_after, wallets), False

    def _post_one(self, params: dict[str, Any]) -> PostedRow:
        return self._run_untimed(
            POST_SQL,
            **{
                **params,
                # Array literals as text: Postgres parses them cheaper than the driver encodes lists.
                "leg_wallets": _array_literal(params["leg_wallets"]),
                "leg_amounts": _array_literal(params["leg_amounts"]),
                "metadata": json.dumps(params["metadata"]) if params["metadata"] else "{}",
                "actor": None if params["actor"] is None else json.dumps(params["actor"]),
            },
        )[0]

    def _post_many(self, batch: Sequence[dict[str, Any]]) -> list[PostedRow | Exception]:
        return self._post_many_counted(batch)[0]

    def post_batch(self, batch: Sequence[dict[str, Any]]) -> tuple[list[PostedRow | Exception], int]:
        """Bulk intake's postings (posting_params() each, at most MAX_POSTINGS_PER_CALL):
        one outcome each, in order, and the round trips that posted them. A call that
        failed as a whole raises: DependencyUnavailable (OutcomeUnknown when the call may
        have committed), or `database_busy` when its wallets stayed held by other
        postings past commit_postings()'s lock wait."""
        if len(batch) > MAX_POSTINGS_PER_CALL:
            raise ValueError(f"at most {MAX_POSTINGS_PER_CALL} postings go in one call")
        try:
            with timing.span("postgres"):
                return self._post_many_counted(batch)
        except DatabaseError as error:
            if error_fields(error).get("C") != LOCK_NOT_AVAILABLE:
                raise
            raise DependencyUnavailable(
                "the wallets of these postings are held by other postings; retry",
                code="database_busy",
                details={"service": "postgres"},
            ) from error

    def _post_many_counted(self, batch: Sequence[dict[str, Any]]) -> tuple[list[PostedRow | Exception], int]:
        """Several postings in one call to ledger.commit_postings(): one outcome each,
        in order, and the calls made. A posting that failed inside the batch comes back
        as the error a posting of its own would have raised; a retryable one (deadlock,
        serialization, a copy that posted its business id meanwhile) is posted again on
        its own, with retries: one call more."""
        numbered = [{"item": i, **params} for i, params in enumerate(batch)]
        rows = self._run_untimed(POST_MANY_SQL, batch=json.dumps(numbered))
        calls = 1
        outcomes: list[PostedRow | Exception] = []
        for params, (item, *posted, sqlstate, message, detail, constraint) in zip(batch, rows, strict=True):
            if item != len(outcomes):
                raise RuntimeError("ledger.commit_postings() answered out of order")
            if sqlstate is None:
                outcomes.append(posted)
            elif retry_alone(sqlstate, constraint):
                calls += 1
                try:
                    outcomes.append(self._post_one(params))
                except Exception as error:  # noqa: BLE001 - this item's own outcome
                    outcomes.append(error)
            else:
                raw = DatabaseError({"S": "ERROR", "C": sqlstate, "M": message, "D": detail, "n": constraint})
                translated = translate(raw)
                outcomes.append(translated if translated is not raw else raw)
        return outcomes, calls

    def _post_after_failed_batch(self, params: dict[str, Any], batch_error: BaseException) -> PostedRow:
        """A posting of a batch that failed as a whole, posted alone. Should the batch's
        connection have been lost after it was sent, a posting that can't reach the
        database now may still have committed with the batch: its outcome is unknown."""
        try:
            return self._post_one(params)
        except DependencyUnavailable as error:
            if isinstance(batch_error, OutcomeUnknown) and not isinstance(error, OutcomeUnknown):
                raise OutcomeUnknown(batch_error.message, details=batch_error.details) from error
            raise

    def posted_under(self, tenant: str, key: str, request_hash: str) -> dict[str, Any] | None:
        """The transaction posted under a tenant's idempotency key, as a replay renders
        it, or None when nothing was. The same key with another request is refused."""
        rows = self._run(
            "SELECT request_hash, id, ledger.transaction_json(id)"
            " FROM ledger.transactions WHERE tenant = :tenant AND idempotency_key = :key",
            tenant=tenant,
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

    def posted_for(self, tenant: str, action: str, business_id: str, request_hash: str) -> dict[str, Any] | None:
        """The posting of this very request that holds a business id in the tenant (a
        payment's reference for a top-up or add-on, a usage id), whatever its key: a
        request sent again under a new key was answered with it. None otherwise."""
        column = "usage_id" if action == "usage" else "external_ref"
        rows = self._run(
            f"SELECT request_hash, ledger.transaction_json(id) FROM ledger.transactions"
            f" WHERE tenant = :tenant AND action = :action AND {column} = :business_id",
            tenant=tenant,
            action=action,
            business_id=business_id,
        )
        if not rows or rows[0][0] != request_hash:
            return None
        return rows[0][1]  # type: ignore[no-any-return]

    def usage_decisions(self, tenant: str, usage_ids: Sequence[str]) -> dict[str, Decided]:
        """What was decided before about these usage ids of the tenant, in one query: the
        posting of each that posted (over HTTP or in bulk), else its kept refusal
        (db/migrations/0011_usage_intake.sql). A posting wins over a refusal: that is
        the one race bulk intake leaves (two copies, one posted, one refused)."""
        if not usage_ids:
            return {}
        rows = self._run(USAGE_DECISIONS_SQL, tenant=tenant, ids=json.dumps(list(usage_ids)))
        decided: dict[str, Decided] = {}
        for usage_id, request_hash, transaction_id, code, message, details in rows:
            if transaction_id is not None or usage_id not in decided:
                decided[usage_id] = Decided(request_hash, transaction_id, code, message, details)
        return decided

    def record_usage_refusals(self, tenant: str, refusals: Sequence[tuple[str, str, Refused]]) -> dict[str, Decided]:
        """Keep the first refusal of each (usage id, request hash, refusal), in one call;
        answers the refusal that stands for each id, this one or one kept before."""
        if not refusals:
            return {}
        batch = [
            {
                "tenant": tenant,
                "usage_id": usage_id,
                "request_hash": request_hash,
                "code": error.code,
                "message": error.message,
                "details": error.details,
            }
            for usage_id, request_hash, error in refusals
        ]
        rows = self._run(
            "SELECT usage_id, request_hash, code, message, details"
            " FROM ledger.record_usage_refusals(CAST(:b AS jsonb))",
            b=json.dumps(batch),
        )
        return {
            usage_id: Decided(request_hash, None, code, message, details)
            for usage_id, request_hash, code, message, details in rows
        }

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

    def dormancy_run(self, limit: int, after_id: int) -> list[dict[str, Any]]:
        """One page of the dormancy run (db/schema/86_dormancy.sql): up to `limit`
        wallets after `after_id`, in id order, one outcome each."""
        rows = self._run(
            "SELECT wallet_id, asset_code, model, outcome, amount, transaction_id, dormant_on, error, postings, closed"
            " FROM ledger.dormancy_run(:n, :after)",
            n=limit,
            after=after_id,
        )
        columns = (
            "wallet_id",
            "asset",
            "model",
            "outcome",
            "amount",
            "transaction_id",
            "dormant_on",
            "error",
            "postings",
            "closed",
        )
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def dormancy_standing(self) -> list[dict[str, Any]]:
        """Per asset and model: wallets dormant now (or closed at dormancy), what their
        sweeps hold in the dormant accounts and what went to breakage, not given back,
        and periods ended by reactivation."""
        rows = self._run(
            "SELECT w.asset_code, w.model, count(*) FILTER (WHERE d.reactivated_at IS NULL),"
            " coalesce(sum(d.swept_amount) FILTER (WHERE d.reactivated_at IS NULL AND t.action = 'dormant_sweep'),"
            " 0), coalesce(sum(d.swept_amount)"
            " FILTER (WHERE d.reactivated_at IS NULL AND t.action = 'dormant_breakage'), 0),"
            " count(*) FILTER (WHERE d.reactivated_at IS NOT NULL)"
            " FROM ledger.dormancy_periods d JOIN ledger.wallets w ON w.id = d.wallet_id"
            " LEFT JOIN ledger.transactions t ON t.id = d.sweep_id"
            " WHERE d.dormant_at IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2"
        )
        columns = ("asset", "model", "dormant", "swept_outstanding", "broken_outstanding", "reactivated")
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def dormancy_reactivate(self, wallet_id: int, actor: dict[str, Any] | None) -> int | None:
        """A dormant wallet made active again, its sweep voided; the void's id, or None
        (nothing was swept, or the wallet was not dormant)."""
        rows = self._run(
            "SELECT ledger.dormancy_reactivate(:w, CAST(:actor AS jsonb))",
            w=wallet_id,
            actor=None if actor is None else json.dumps(actor),
        )
        result: int | None = rows[0][0]
        return result


def posting_params(
    posting: Posting, key: str, request_hash: str, tenant: str, actor: dict[str, Any] | None
) -> dict[str, Any]:
    """A posting as ledger.commit_posting(s)() takes it."""
    return {
        "tenant": tenant,
        "actor": actor,
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


def render(
    posting: Posting,
    key: str,
    actor: dict[str, Any] | None,
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
        "actor": actor,
        "entries": [
            {"wallet_id": wallet, "amount": leg.amount, "balance_after": balance}
            for leg, wallet, balance in zip(posting.legs, wallets, balances, strict=True)
        ],
    }


def _array_literal(values: Iterable[int]) -> str:
    return "{" + ",".join(str(value) for value in values) + "}"


def _parse_balances(text: str) -> list[int | None]:
    """Running balances sent as "12,,40" (empty: a system leg, which keeps none): the
    driver's bigint[] parser was a noticeable share of a posting's client CPU
    (bench/results/notes.md)."""
    return [int(value) if value else None for value in text.split(",")]
