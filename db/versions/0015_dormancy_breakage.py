"""Dormancy, second slice: the `dormant_breakage` action and policy action `breakage`,
the `delete` reactivation policy, and a period's sweep postings, one per traced
(product, usage id) group."""

from db.sql_migration import run_sql_file

revision = "0015_dormancy_breakage"
down_revision = "0014_dormancy"


def upgrade() -> None:
    run_sql_file("0015_dormancy_breakage.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
