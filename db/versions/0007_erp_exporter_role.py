"""The ERP export gets a database role of its own; the HTTP functions lose its writes."""

from db.sql_migration import run_sql_file

revision = "0007_erp_exporter_role"
down_revision = "0006_review_fixes"


def upgrade() -> None:
    run_sql_file("0007_erp_exporter_role.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
