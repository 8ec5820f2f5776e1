"""What a bulk migration reads and writes besides its postings (common/migrate.py):
the pre-flight's facts, the wallets a migration created, its postings and their voids.
Postings themselves go through PostgresLedger.post_batch() (ledger.commit_postings()),
the one money path with all its guards; wallets through ledger.create_wallet(), the
audited procedure. A migration's rows are found by the indexes of migration 0013."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from common.adapters.postgres import Statements

# (class, key) advisory locks: a run holds its migration id's for as long as it runs;
# the class keeps them apart from the deploy's (4242) and the ledger's one-integer keys.
_RUN_LOCK_CLASS = 4243

# A source row's posting, found by its idempotency key (the unique index of
# (tenant, idempotency_key)), with whether it was voided since.
_POSTED_ROWS = """
SELECT s.row_id, t.asset_code, w.model, t.amount,
       EXISTS (SELECT 1 FROM ledger.transactions v WHERE v.voids_transaction_id = t.id), t.request_hash
  FROM jsonb_array_elements_text(CAST(:row_ids AS jsonb)) AS s(row_id)
  JOIN ledger.transactions t ON t.tenant = '' AND t.idempotency_key = 'migration:' || :m || ':' || s.row_id
  JOIN ledger.wallets w ON w.id = t.wallet_id
 WHERE t.action = :action
"""


class MigrationStore(Statements):
    def assets(self) -> set[str]:
        return {row[0] for row in self._run("SELECT code FROM ledger.assets")}

    def migration_account(self, asset: str) -> int | None:
        rows = self._run(
            "SELECT id FROM ledger.wallets WHERE kind = 'system' AND system_role = 'migration' AND asset_code = :a",
            a=asset,
        )
        return int(rows[0][0]) if rows else None

    def parents(self, ids: Sequence[int]) -> dict[int, tuple[str, str, str]]:
        """wallet id -> (asset, model, kind) of each that exists."""
        if not ids:
            return {}
        rows = self._run(
            "SELECT id, asset_code, model, kind FROM ledger.wallets WHERE id = ANY (CAST(:ids AS bigint[]))",
            ids="{" + ",".join(map(str, ids)) + "}",
        )
        return {int(i): (asset, model, kind) for i, asset, model, kind in rows}

    def wallets_of(self, migration_id: str) -> dict[tuple[str, str, str, int | None], int]:
        """(owner, asset, model, parent) -> the wallet this migration created for it. Only
        a migration marks a wallet so (callers' metadata may not name migration_id:
        common/ledger/commands.py); the first made wins, should there be two."""
        rows = self._run(
            "SELECT owner_id, asset_code, model, parent_id, id FROM ledger.wallets"
            " WHERE metadata ? 'migration_id' AND metadata ->> 'migration_id' = :m AND kind = 'customer'"
            " ORDER BY id DESC",
            m=migration_id,
        )
        return {(owner, asset, model, parent): int(i) for owner, asset, model, parent, i in rows}

    @contextmanager
    def run_lock(self, migration_id: str) -> Iterator[bool]:
        """Whether this run has the migration id to itself, held until the block ends
        (or the process dies: a session lock goes with its connection). Two runs of one
        migration at once would each create the wallets the other has not seen yet."""
        with self._pool.connection() as con:
            got = con.run("SELECT pg_try_advisory_lock(:c, hashtext(:m))", c=_RUN_LOCK_CLASS, m=migration_id)[0][0]
            try:
                yield bool(got)
            finally:
                if got:
                    con.run("SELECT pg_advisory_unlock(:c, hashtext(:m))", c=_RUN_LOCK_CLASS, m=migration_id)

    def posted_rows(self, migration_id: str, row_ids: Sequence[str], action: str) -> dict[str, tuple[Any, ...]]:
        """row id -> (asset, model, amount, voided, request hash) of each of these rows
        that posted (`action`: the kind of posting a row makes). Callers pass a few
        thousand ids at a time: a million-row file is never held twice over."""
        rows = self._run(_POSTED_ROWS, row_ids=json.dumps(list(row_ids)), m=migration_id, action=action)
        return {row[0]: tuple(row[1:]) for row in rows}

    def postings_of(self, migration_id: str) -> list[dict[str, Any]]:
        """Every posting of the migration that is not a void, with whether it was voided."""
        rows = self._run(
            "SELECT t.id, t.action, t.metadata ->> 'migration_row', t.asset_code, t.amount, w.model,"
            "       EXISTS (SELECT 1 FROM ledger.transactions v WHERE v.voids_transaction_id = t.id)"
            "  FROM ledger.transactions t JOIN ledger.wallets w ON w.id = t.wallet_id"
            " WHERE t.metadata ? 'migration_id' AND t.metadata ->> 'migration_id' = :m"
            # what the migration posted itself, under its own keys: never what metadata alone names
            "   AND t.tenant = '' AND starts_with(t.idempotency_key, 'migration:' || :m || ':')"
            "   AND t.action IN ('opening_balance', 'migration_transfer')"
            " ORDER BY t.id",
            m=migration_id,
        )
        columns = ("id", "action", "row_id", "asset", "amount", "model", "voided")
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def entries_of(self, transaction_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """What a void of each posting needs: the original's fields and its legs."""
        rows = self._run(
            "SELECT t.id, t.asset_code, t.amount, t.wallet_id, t.counterparty_wallet_id,"
            "       array_to_string(array_agg(e.wallet_id ORDER BY e.id), ','),"
            "       array_to_string(array_agg(e.amount ORDER BY e.id), ',')"
            "  FROM ledger.transactions t JOIN ledger.entries e ON e.transaction_id = t.id"
            " WHERE t.id = ANY (CAST(:ids AS bigint[])) GROUP BY t.id",
            ids="{" + ",".join(map(str, transaction_ids)) + "}",
        )
        return {
            int(i): {
                "asset": asset,
                "amount": amount,
                "wallet_id": wallet,
                "counterparty_wallet_id": counterparty,
                "leg_wallets": [int(w) for w in wallets.split(",")],
                "leg_amounts": [int(a) for a in amounts.split(",")],
            }
            for i, asset, amount, wallet, counterparty, wallets, amounts in rows
        }
