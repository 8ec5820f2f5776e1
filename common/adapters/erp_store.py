"""The ERP export's state in Postgres: the export order over the ledger, cursors,
charts and batches (db/schema/90_erp_export.sql, privileges in 99_grants.sql)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from common.adapters.postgres import Pool, run_with_retry
from common.erp.chart import Chart
from common.erp.mapping import MIGRATION_ACTIONS, Leg, Position, Transaction

_TRANSACTION_COLUMNS = """
SELECT t.created_xact::text, t.id, t.action, t.asset_code, ledger.iso_utc(t.effective_at), t.usage_id, t.product,
       t.external_ref, t.voids_transaction_id, e.wallet_id, w.owner_id, w.kind, w.model, w.system_role, e.amount,
       tw.owner_id, CASE WHEN rw.model = 'reseller' THEN rw.owner_id END, t.actor ->> 'principal', t.actor ->> 'role',
       -- a dormant wallet's reactivation voids its sweep under keys only it posts (70_posting.sql)
       CASE WHEN t.action = 'void' AND t.idempotency_key LIKE 'dormant-reactivation:%' THEN 'dormant_reactivation' END,
       coalesce(o.action, t.action) = ANY (CAST(:migration_actions AS text[]))
  FROM page t JOIN ledger.entries e ON e.transaction_id = t.id JOIN ledger.wallets w ON w.id = e.wallet_id
  LEFT JOIN ledger.wallets tw ON tw.id = t.wallet_id LEFT JOIN ledger.wallets rw ON rw.id = tw.root_id
  LEFT JOIN ledger.transactions o ON o.id = t.voids_transaction_id
 ORDER BY t.created_xact, t.id, e.id
"""
# The next transactions after a position whose creating database transaction is older
# than every one still running: none of them can change or gain a neighbour any more.
NEXT_PAGE_SQL = (
    """
WITH page AS (
  SELECT * FROM ledger.transactions
   WHERE (created_xact, id) > (CAST(:after_xact AS xid8), CAST(:after_id AS bigint))
     AND created_xact < pg_snapshot_xmin(pg_current_snapshot())
   ORDER BY created_xact, id
   LIMIT CAST(:limit AS integer))"""
    + _TRANSACTION_COLUMNS
)
RANGE_SQL = (
    """
WITH page AS (
  SELECT * FROM ledger.transactions
   WHERE (created_xact, id) > (CAST(:after_xact AS xid8), CAST(:after_id AS bigint))
     AND (created_xact, id) <= (CAST(:last_xact AS xid8), CAST(:last_id AS bigint))
   ORDER BY created_xact, id)"""
    + _TRANSACTION_COLUMNS
)
# The ERP reconciliation's ledger side of some batches (erp.batch_sums, 90_erp_export.sql)
BATCH_SUMS_SQL = """
SELECT chart_version, day, asset_code, kind, model, system_role, debit::text, credit::text
  FROM erp.batch_sums(CAST(:ids AS text[]))
"""
BATCH_COLUMNS = (
    "id",
    "seq",
    "after_xact",
    "after_id",
    "last_xact",
    "last_id",
    "chart_version",
    "event_count",
    "line_count",
    "totals",
    "status",
    "attempts",
    "next_attempt_at",
    "last_error",
    "created_at",
    "delivered_at",
)
BATCH_SELECT = """
SELECT id, seq, after_xact::text, after_id, last_xact::text, last_id, chart_version, event_count, line_count, totals,
       status, attempts, ledger.iso_utc(next_attempt_at), last_error, ledger.iso_utc(created_at),
       ledger.iso_utc(delivered_at)
  FROM erp.batches
"""


def _transactions(rows: list[list[Any]]) -> Iterator[tuple[Position, Transaction]]:
    """Rows of legs, ordered by transaction, folded into transactions."""
    current: list[Any] | None = None
    legs: list[Leg] = []
    for row in rows:
        if current is None or row[1] != current[1]:
            if current is not None:
                yield _transaction(current, legs)
            current, legs = row, []
        legs.append(Leg(row[9], row[10], row[11], row[12], row[13], row[14]))
    if current is not None:
        yield _transaction(current, legs)


def _transaction(row: list[Any], legs: list[Leg]) -> tuple[Position, Transaction]:
    return (row[0], row[1]), Transaction(
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        tuple(legs),
        customer_id=row[15],
        reseller_id=row[16],
        actor=row[17],
        actor_role=row[18],
        event_type=row[19],
        migration=row[20],
    )


class ErpStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def _run(self, sql: str, **params: Any) -> list[list[Any]]:
        return run_with_retry(self._pool, lambda con: con.run(sql, **params))

    # The ledger, in export order ------------------------------------------------

    def next_page(self, after: Position, limit: int) -> list[tuple[Position, Transaction]]:
        rows = self._run(
            NEXT_PAGE_SQL,
            after_xact=after[0],
            after_id=after[1],
            limit=limit,
            migration_actions=list(MIGRATION_ACTIONS),
        )
        return list(_transactions(rows))

    def transactions_in(self, after: Position, last: Position) -> list[tuple[Position, Transaction]]:
        rows = self._run(
            RANGE_SQL,
            after_xact=after[0],
            after_id=after[1],
            last_xact=last[0],
            last_id=last[1],
            migration_actions=list(MIGRATION_ACTIONS),
        )
        return list(_transactions(rows))

    # Cursors, charts, batches ---------------------------------------------------

    def cursor(self, stream: str) -> Position:
        return self.stream(stream)[1]

    def stream(self, stream: str) -> tuple[Position, Position]:
        """(where the stream starts, where its cursor is)."""
        rows = self._run(
            "SELECT start_xact::text, start_id, after_xact::text, after_id FROM erp.cursors WHERE name = :s", s=stream
        )
        if not rows:
            raise LookupError(f"no export stream {stream!r}")
        start_xact, start_id, after_xact, after_id = rows[0]
        return (start_xact, start_id), (after_xact, after_id)

    def open_stream(self, stream: str) -> None:
        """A stream that starts after everything the ledger holds now (no-op if it exists)."""
        self._run("SELECT erp.open_stream(:s)", s=stream)

    def save_chart(self, chart: Chart) -> None:
        self._run("SELECT erp.save_chart(:v, CAST(:c AS jsonb))", v=chart.version, c=json.dumps(chart.sections))

    def chart(self, version: str) -> Chart:
        rows = self._run("SELECT chart FROM erp.charts WHERE version = :v", v=version)
        if not rows:
            raise LookupError(f"no chart {version!r}")
        chart = Chart.from_dict(rows[0][0], complete=False)
        if chart.version != version:
            raise LookupError(f"chart {version!r} reads back as {chart.version!r}")
        return chart

    def record_batch(
        self,
        stream: str,
        batch_id: str,
        after: Position,
        last: Position,
        chart_version: str,
        events: int,
        lines: int,
        totals: dict[str, Any],
    ) -> bool:
        """Record a batch and move the cursor past it; False if another exporter moved it first."""
        return self._run(
            "SELECT erp.record_batch(:s, :id, CAST(:ax AS xid8), :ai, CAST(:lx AS xid8), :li, :v, :e, :l,"
            " CAST(:t AS jsonb))",
            s=stream,
            id=batch_id,
            ax=after[0],
            ai=after[1],
            lx=last[0],
            li=last[1],
            v=chart_version,
            e=events,
            l=lines,
            t=json.dumps(totals),
        )[0][0]

    def due(self, stream: str, limit: int) -> list[dict[str, Any]]:
        rows = self._run(
            BATCH_SELECT
            + " WHERE status = 'pending' AND next_attempt_at <= now() AND stream = :s ORDER BY seq LIMIT :n",
            s=stream,
            n=limit,
        )
        return [dict(zip(BATCH_COLUMNS, row, strict=True)) for row in rows]

    def parked(self, stream: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._run(
            BATCH_SELECT + " WHERE status = 'parked' AND stream = :s ORDER BY seq LIMIT :n", s=stream, n=limit
        )
        return [dict(zip(BATCH_COLUMNS, row, strict=True)) for row in rows]

    def status_counts(self, stream: str) -> dict[str, int]:
        return dict(self._run("SELECT status, count(*) FROM erp.batches WHERE stream = :s GROUP BY status", s=stream))

    def mark_delivered(self, batch_id: str, acknowledgement: dict[str, Any]) -> None:
        self._run("SELECT erp.mark_delivered(:id, CAST(:a AS jsonb))", id=batch_id, a=json.dumps(acknowledgement))

    def mark_failed(self, batch_id: str, error: str, retry_in_s: float, park_after: int) -> str | None:
        """Count a failed delivery; returns the batch's status now ('pending' or 'parked')."""
        rows = self._run(
            "SELECT erp.mark_failed(:id, :e, make_interval(secs => :r), :p)",
            id=batch_id,
            e=error,
            r=retry_in_s,
            p=park_after,
        )
        return rows[0][0] if rows else None

    def replay(self, batch_id: str) -> bool:
        return bool(self._run("SELECT erp.replay(:id)", id=batch_id)[0][0])

    # Reconciliation -------------------------------------------------------------

    def fold_delivered(self, stream: str, batches: int = 20) -> int:
        """Add up to `batches` delivered, not yet summed batches to the running totals
        (erp.fold_delivered, db/schema/90_erp_export.sql); how many it summed."""
        return self._run("SELECT erp.fold_delivered(:s, :n)", s=stream, n=batches)[0][0]

    def unsummed_count(self, stream: str) -> int:
        return self._run(
            "SELECT count(*) FROM erp.batches WHERE stream = :s AND status = 'delivered' AND summed_at IS NULL",
            s=stream,
        )[0][0]

    def running_totals(self, stream: str, with_ids: bool = False) -> tuple[list[list[Any]], int, list[str] | None]:
        """The running totals (rows of BATCH_SUMS_SQL), how many batches are summed into
        them and, `with_ids`, which: one statement, so one snapshot (a run summing at
        the same moment commits its sums and its marks together). Without the ids, the
        cost is the totals' rows and a count by index, whatever the history's length."""
        rows, count, ids = self._run(
            "SELECT (SELECT array_agg(ARRAY[chart_version, day, asset_code, kind, model, system_role, debit::text,"
            "                               credit::text])"
            "          FROM erp.reconciled_sums WHERE stream = :s),"
            "       (SELECT count(*) FROM erp.batches"
            "         WHERE stream = :s AND status = 'delivered' AND summed_at IS NOT NULL),"
            "       CASE WHEN :with_ids THEN (SELECT array_agg(id) FROM erp.batches WHERE stream = :s"
            "                                  AND status = 'delivered' AND summed_at IS NOT NULL) END",
            s=stream,
            with_ids=with_ids,
        )[0]
        return list(rows or []), count, (list(ids or []) if with_ids else None)

    def scanned_sums(self, batch_ids: list[str], batches: int = 20) -> list[list[Any]]:
        """The same sums from a scan of these batches' ledger rows, `batches` batches a
        statement: what the running totals over them must equal (`ops reconcile
        --full`). Rows of BATCH_SUMS_SQL, one per chunk and key; the caller adds. Each
        batch's rows never change once it is delivered, so the chunks need no common
        snapshot (a long one would hold the export's horizon back)."""
        rows: list[list[Any]] = []
        for start in range(0, len(batch_ids), batches):
            rows += self._run(BATCH_SUMS_SQL, ids=batch_ids[start : start + batches])
        return rows
