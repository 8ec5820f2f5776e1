"""Tamper evidence: the hash chain's links over transactions and their entries."""

from db.sql_migration import run_sql_file

revision = "0008_hash_chain"
down_revision = "0007_callers"


def upgrade() -> None:
    run_sql_file("0008_hash_chain.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
