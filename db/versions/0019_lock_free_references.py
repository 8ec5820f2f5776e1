"""References checked by the guards without a row lock; the void index without NULLs."""

from db.sql_migration import run_sql_file

revision = "0019_lock_free_references"
down_revision = "0018_reconciliation_checkpoint"


def upgrade() -> None:
    run_sql_file("0019_lock_free_references.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
