"""Wallet models: tree columns, spend limit and lot tables, new actions and system accounts."""

from db.sql_migration import run_sql_file

revision = "0006_wallet_models"
down_revision = "0005_erp_export"


def upgrade() -> None:
    run_sql_file("0006_wallet_models.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
