"""The hash chain in Postgres: extending it through ledger.extend_chain()
(db/schema/88_hash_chain.sql), and reading each link with the rows it covers, for
common/hash_chain.py to recompute.

The rows are read as the text of each column through built-in casts only, the values
ledger.chain_text() hashes, in its order: a verify depends on no function in the
ledger's schema. Statements go through `run`, so a test can verify inside the very
transaction that tampered with the rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common.hash_chain import Head, Key, Lag, Link, LinkedRow

Run = Callable[..., list[list[Any]]]

_UTC = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
TRANSACTION_FIELDS = (
    "t.id::text",
    "t.created_xact::text",
    "t.tenant",
    "t.idempotency_key",
    "t.request_hash",
    "t.action",
    "t.asset_code",
    "t.amount::text",
    "t.wallet_id::text",
    "t.counterparty_wallet_id::text",
    "t.external_ref",
    "t.usage_id",
    "t.product",
    "t.description",
    "t.voids_transaction_id::text",
    "t.metadata::text",
    "t.actor::text",
    _UTC.format("t.effective_at"),
    _UTC.format("t.created_at"),
)
ENTRY_FIELDS = (
    "e.id::text",
    "e.transaction_id::text",
    "e.wallet_id::text",
    "e.asset_code",
    "e.amount::text",
    "e.balance_after::text",
    _UTC.format("e.created_at"),
)

EXTEND_SQL = """
SELECT linked, busy, head_position, head_transaction_id, head_hash FROM ledger.extend_chain(CAST(:limit AS integer))"""
LAG_SQL = "SELECT next_transaction_id, waiting_s, held_back FROM ledger.chain_lag()"
HEAD_SQL = """
SELECT position, transaction_id, encode(chain_hash, 'hex') FROM ledger.chain_links ORDER BY position DESC LIMIT 1"""
LINKS_SQL = f"""
SELECT c.position, c.transaction_id, c.created_xact::text, c.entry_ids, c.row_hash, c.chain_hash,
       t.id IS NOT NULL, {", ".join(TRANSACTION_FIELDS)}
  FROM (SELECT * FROM ledger.chain_links WHERE position > CAST(:after AS bigint)
         ORDER BY position LIMIT CAST(:limit AS integer)) c
  LEFT JOIN ledger.transactions t ON t.id = c.transaction_id
 ORDER BY c.position"""
ENTRIES_SQL = f"""
SELECT e.transaction_id, e.id, {", ".join(ENTRY_FIELDS)} FROM ledger.entries e
 WHERE e.transaction_id = ANY(CAST(:ids AS bigint[]))
 ORDER BY e.transaction_id, e.id"""
FIRST_UNLINKED_SQL = """
SELECT t.created_xact::text, t.id FROM ledger.transactions t
 WHERE (t.created_xact, t.id) > (CAST(:after_xact AS xid8), CAST(:after_id AS bigint))
   AND (t.created_xact, t.id) <= (CAST(:up_to_xact AS xid8), CAST(:up_to_id AS bigint))
   AND NOT EXISTS (SELECT 1 FROM ledger.chain_links c WHERE c.transaction_id = t.id)
 ORDER BY t.created_xact, t.id
 LIMIT 1"""


class ChainStore:
    def __init__(self, run: Run) -> None:
        self._run = run

    def extend(self, limit: int) -> tuple[int, bool, Head | None]:
        """Link up to `limit` transactions: (how many, whether another extender was at work, the head)."""
        linked, busy, position, transaction_id, digest = self._run(EXTEND_SQL, limit=limit)[0]
        return linked, busy, None if position is None else Head(position, transaction_id, digest)

    def lag(self) -> Lag:
        rows = self._run(LAG_SQL)
        return Lag(rows[0][0], float(rows[0][1]), rows[0][2]) if rows else Lag(None, 0.0, False)

    def head(self) -> Head | None:
        rows = self._run(HEAD_SQL)
        return Head(*rows[0]) if rows else None

    def linked_rows(self, after_position: int, limit: int) -> list[LinkedRow]:
        rows = self._run(LINKS_SQL, after=after_position, limit=limit)
        ids = [row[1] for row in rows if row[6]]
        entries: dict[int, list[list[Any]]] = {}
        for row in self._run(ENTRIES_SQL, ids=ids) if ids else []:
            entries.setdefault(row[0], []).append(row)
        found = []
        for position, transaction_id, xact, entry_ids, row_hash, chain_hash, exists, *fields in rows:
            legs = entries.get(transaction_id, [])
            found.append(
                LinkedRow(
                    Link(position, transaction_id, int(xact), tuple(entry_ids), bytes(row_hash), bytes(chain_hash)),
                    tuple(fields) if exists else None,
                    tuple(tuple(leg[2:]) for leg in legs),
                    tuple(leg[1] for leg in legs),
                )
            )
        return found

    def first_unlinked(self, after: Key, up_to: Key) -> Key | None:
        rows = self._run(
            FIRST_UNLINKED_SQL,
            after_xact=str(after[0]),
            after_id=after[1],
            up_to_xact=str(up_to[0]),
            up_to_id=up_to[1],
        )
        return (int(rows[0][0]), rows[0][1]) if rows else None
