"""Bulk usage intake: the first refusal of each usage id, kept so a repeated id gets it."""

from db.sql_migration import run_sql_file

revision = "0011_usage_intake"
down_revision = "0010_automation_rules"


def upgrade() -> None:
    run_sql_file("0011_usage_intake.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
