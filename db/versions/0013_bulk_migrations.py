"""Bulk balance migrations: opening_balance, the migration equity account, lookups by migration."""

from db.sql_migration import run_sql_file

revision = "0013_bulk_migrations"
down_revision = "0012_automation_firings"


def upgrade() -> None:
    run_sql_file("0013_bulk_migrations.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
