"""Nothing left to run once: ledger.commit_posting(), ledger.create_asset() and the
functions' privileges are current definitions in db/schema/ (70_posting.sql,
99_grants.sql), re-applied after every migration run. The revision stays so that a
database migrated before the move keeps its place in the chain."""

revision = "0002_posting"
down_revision = "0001_ledger_core"


def upgrade() -> None:
    pass


def downgrade() -> None:
    raise NotImplementedError("the ledger is append-only: migrations roll forward")
