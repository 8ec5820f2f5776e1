"""Dormancy: policies per (asset, wallet model), the `dormant` wallet status and system
account, the `dormant_sweep` action, each wallet's last customer-initiated posting, and
one row per (wallet, dormancy period)."""

from db.sql_migration import run_sql_file

revision = "0014_dormancy"
# 0013_bulk_migrations is built in parallel (issue 16, mass migration); the coordinator
# renumbers on merge.
down_revision = "0012_automation_firings"


def upgrade() -> None:
    run_sql_file("0014_dormancy.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
