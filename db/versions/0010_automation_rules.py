"""Automatic actions' rules: auto top-ups, low-balance notices, recurring allocations."""

from db.sql_migration import run_sql_file

revision = "0010_automation_rules"
down_revision = "0009_business_ids"


def upgrade() -> None:
    run_sql_file("0010_automation_rules.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
