"""Incremental reconciliation's checkpoint and totals; autovacuum settings for the
append-only tables."""

from db.sql_migration import run_sql_file

revision = "0018_reconciliation_checkpoint"
down_revision = "0017_balance_checkpoints"


def upgrade() -> None:
    run_sql_file("0018_reconciliation_checkpoint.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
