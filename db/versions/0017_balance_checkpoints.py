"""System account balances from checkpoints: entries' created_xact, the tail index, the
horizon and the checkpoints."""

from db.sql_migration import run_sql_file

revision = "0017_balance_checkpoints"
down_revision = "0016_migration_transfer"


def upgrade() -> None:
    run_sql_file("0017_balance_checkpoints.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
