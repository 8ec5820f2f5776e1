"""Each ledger transaction records the top-level database transaction that created it."""

from db.sql_migration import run_sql_file

revision = "0004_posting_batch"
down_revision = "0003_outbox"


def upgrade() -> None:
    run_sql_file("0004_posting_batch.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
