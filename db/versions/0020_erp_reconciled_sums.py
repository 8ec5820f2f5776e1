"""The ERP reconciliation's running totals: each delivered batch summed once."""

from db.sql_migration import run_sql_file

revision = "0020_erp_reconciled_sums"
down_revision = "0019_lock_free_references"


def upgrade() -> None:
    run_sql_file("0020_erp_reconciled_sums.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
