"""Migration moves: the `migration_transfer` action, between any two customer wallets of an asset."""

from db.sql_migration import run_sql_file

revision = "0016_migration_transfer"
down_revision = "0015_dormancy_breakage"


def upgrade() -> None:
    run_sql_file("0016_migration_transfer.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
