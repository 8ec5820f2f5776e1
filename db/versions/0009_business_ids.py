"""Business ids post once per tenant: a payment's reference per top-up and per add-on,
a usage id per usage. A database already holding duplicates is not upgraded: it stops
naming them (docs/database.md, "Business ids")."""

from alembic import op
from sqlalchemy import text

from db.sql_migration import run_sql_file

revision = "0009_business_ids"
down_revision = "0008_hash_chain"

DUPLICATES = """
SELECT tenant, action, coalesce(external_ref, usage_id), array_agg(id ORDER BY id)
  FROM ledger.transactions
 WHERE (action IN ('topup', 'addon') AND external_ref IS NOT NULL) OR (action = 'usage' AND usage_id IS NOT NULL)
 GROUP BY tenant, action, coalesce(external_ref, usage_id)
HAVING count(*) > 1
 ORDER BY min(id)
"""


class DuplicateBusinessIds(RuntimeError):
    pass


def upgrade() -> None:
    duplicates = op.get_bind().execute(text(DUPLICATES)).all()
    if duplicates:
        named = "; ".join(
            f"tenant {tenant!r} {action} {business_id!r}: transactions {', '.join(map(str, ids))}"
            for tenant, action, business_id, ids in duplicates[:10]
        )
        raise DuplicateBusinessIds(
            f"ledger.transactions holds {len(duplicates)} business id(s) posted more than once; not upgraded. "
            f"The first ten: {named}. Each is a payment credited twice or a usage charged twice: decide which "
            "posting stands and void the others; the unique indexes of 0009_business_ids.sql then need to leave "
            "the voided ones out, in a migration written for this database (docs/database.md, 'Business ids')."
        )
    run_sql_file("0009_business_ids.sql")


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
