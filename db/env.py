"""Alembic environment: the SQL migrations in db/migrations/ over pg8000, and around
them the current definitions in db/schema/ (db/definitions.py), in one transaction.

The URL comes from the Alembic config (set by `emulators.database.migrate` locally, or
by `LEDGER_MIGRATIONS_URL` in a deployment job). Each migration executes its SQL file
as the driver's raw SQL, so PL/pgSQL bodies reach Postgres untouched.
"""

import os

from alembic import context
from sqlalchemy import create_engine, pool

from db import definitions

config = context.config
url = config.get_main_option("sqlalchemy.url") or os.environ["LEDGER_MIGRATIONS_URL"]
engine = create_engine(url, poolclass=pool.NullPool)

with engine.connect() as connection:
    context.configure(connection=connection, version_table_schema="public")
    with context.begin_transaction():
        migration = context.get_context()
        pending = set(migration.get_current_heads()) != set(context.script.get_heads())
        definitions.rebuild(connection, context.run_migrations, force=pending)
