"""Group commit locks wait at most a second; new export streams start at the horizon."""

from db.sql_migration import run_sql_file

revision = "0006_review_fixes"
down_revision = "0005_erp_export"


def upgrade() -> None:
    run_sql_file("0006_review_fixes.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
