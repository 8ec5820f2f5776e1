"""ledger.post() returns only what the database knows; transaction_json() in PL/pgSQL."""

from db.sql_migration import run_sql_file

revision = "0003_fast_post"
down_revision = "0002_posting"


def upgrade() -> None:
    run_sql_file("0003_fast_post.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
