"""ledger.commit_posting(): ledger.post() without rendering JSON; transaction_json() in PL/pgSQL."""

from db.sql_migration import run_sql_file

revision = "0003_commit_posting"
down_revision = "0002_posting"


def upgrade() -> None:
    run_sql_file("0003_commit_posting.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
