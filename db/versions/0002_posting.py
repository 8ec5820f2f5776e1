"""ledger.commit_posting(), asset creation and the application role's privileges."""

from db.sql_migration import run_sql_file

revision = "0002_posting"
down_revision = "0001_ledger_core"


def upgrade() -> None:
    run_sql_file("0002_posting.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
