"""Callers and tenants: principals, roles, grants, the audit log, dual control, and
postings scoped to their caller's tenant."""

from db.sql_migration import run_sql_file

revision = "0007_callers"
down_revision = "0006_wallet_models"


def upgrade() -> None:
    run_sql_file("0007_callers.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
