"""Assets, wallets, transactions and entries, with the constraints each row must meet."""

from db.sql_migration import run_sql_file

revision = "0001_ledger_core"
down_revision = None


def upgrade() -> None:
    run_sql_file("0001_ledger_core.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
