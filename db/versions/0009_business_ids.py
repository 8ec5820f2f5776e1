"""Business ids post once per tenant: a payment's reference per top-up and per add-on,
a usage id per usage (a database holding duplicates is refused, naming them)."""

from db.sql_migration import run_sql_file

revision = "0009_business_ids"
down_revision = "0007_callers"


def upgrade() -> None:
    run_sql_file("0009_business_ids.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
