"""The ERP export's order over the ledger, and its state: charts, cursors, batches."""

from db.sql_migration import run_sql_file

revision = "0005_erp_export"
down_revision = "0004_posting_batch"


def upgrade() -> None:
    run_sql_file("0005_erp_export.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
