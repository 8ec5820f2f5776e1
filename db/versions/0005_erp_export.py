"""The ERP export: its order over the ledger, cursors, charts and batches."""

from db.sql_migration import run_sql_file

revision = "0005_erp_export"
down_revision = "0004_posting_batch"


def upgrade() -> None:
    run_sql_file("0005_erp_export.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
