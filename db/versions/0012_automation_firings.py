"""Automatic actions' firings: one per (rule, triggering event or period)."""

from db.sql_migration import run_sql_file

revision = "0012_automation_firings"
down_revision = "0011_usage_intake"


def upgrade() -> None:
    run_sql_file("0012_automation_firings.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
