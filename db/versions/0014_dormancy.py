"""Dormancy: policies per (asset, wallet model), the `dormant` wallet status and system
account, the `dormant_sweep` action, each wallet's last customer-initiated posting, and
one row per (wallet, dormancy period)."""

from db.sql_migration import run_sql_file

revision = "0014_dormancy"
down_revision = "0013_bulk_migrations"


def upgrade() -> None:
    run_sql_file("0014_dormancy.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
