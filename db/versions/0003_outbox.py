"""The transactional outbox's table: one row per ledger transaction, written with it."""

from db.sql_migration import run_sql_file

revision = "0003_outbox"
down_revision = "0002_posting"


def upgrade() -> None:
    run_sql_file("0003_outbox.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
