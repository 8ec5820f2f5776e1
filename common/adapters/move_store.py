"""What a migration's moves read besides what every migration reads (MigrationStore):
the wallets a plan names, with what each can spend now, and the moves already posted.
The moves themselves go through PostgresLedger.post_batch() like every posting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.adapters.migration_store import MigrationStore
from common.migration_moves import WalletFacts


class MoveStore(MigrationStore):
    def wallet_facts(self, ids: Sequence[int]) -> dict[int, WalletFacts]:
        """Each wallet that exists; spendable as the dormancy sweep counts it: credit in
        lots already due is the expiry job's, not the wallet's to move."""
        if not ids:
            return {}
        rows = self._run(
            "SELECT w.id, w.asset_code, w.model, w.kind, w.status,"
            "       w.balance - coalesce((SELECT sum(l.remaining) FROM ledger.lots l"
            "                              WHERE l.wallet_id = w.id AND l.remaining > 0 AND l.expires_at <= now()), 0)"
            "  FROM ledger.wallets w WHERE w.id = ANY (CAST(:ids AS bigint[]))",
            ids="{" + ",".join(map(str, sorted(set(ids)))) + "}",
        )
        return {int(row[0]): WalletFacts(row[1], row[2], row[3], row[4], int(row[5])) for row in rows}

    def moves_of(self, migration_id: str) -> dict[str, dict[str, Any]]:
        """row id -> the migration's move of it as posted, and whether it was voided since."""
        rows = self._run(
            "SELECT t.metadata ->> 'migration_row', t.id, t.wallet_id, t.counterparty_wallet_id, t.asset_code,"
            "       t.amount, t.metadata ->> 'move_amount',"
            "       EXISTS (SELECT 1 FROM ledger.transactions v WHERE v.voids_transaction_id = t.id)"
            "  FROM ledger.transactions t"
            " WHERE t.metadata ? 'migration_id' AND t.metadata ->> 'migration_id' = :m"
            "   AND t.tenant = '' AND starts_with(t.idempotency_key, 'migration:' || :m || ':')"
            "   AND t.action = 'migration_transfer'",
            m=migration_id,
        )
        columns = ("id", "source_wallet", "target_wallet", "asset", "amount", "move_amount", "voided")
        return {row[0]: dict(zip(columns, row[1:], strict=True)) for row in rows}
