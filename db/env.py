"""Alembic environment: the SQL migrations in db/migrations/ over pg8000.

Run through `python -m db upgrade` (db/upgrade.py), the migrations go inside the
re-creation of the current definitions in db/schema/ (db/definitions.py), in one
transaction. Run through the plain `alembic` command (current, history, stamp, an
upgrade to a given revision), it is Alembic alone: the definitions are left as they are,
and the next `python -m db upgrade` brings them up to date.

Each migration executes its SQL file as the driver's raw SQL, so PL/pgSQL bodies reach
Postgres untouched.
"""

import os

from alembic import context
from sqlalchemy import create_engine, pool

from db import definitions

config = context.config
url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url") or os.environ["LEDGER_MIGRATIONS_URL"]
with_definitions = config.attributes.get("with_definitions", False)

if context.is_offline_mode():
    if with_definitions:
        raise SystemExit("the definitions are applied to a live database only: no --sql with python -m db upgrade")
    context.configure(url=url, literal_binds=True, version_table_schema="public")
    with context.begin_transaction():
        context.run_migrations()
else:
    # a creator (db/connect.py: the Cloud SQL connector) opens the connections itself
    creator = config.attributes.get("creator")
    engine = create_engine(url, poolclass=pool.NullPool, **({"creator": creator} if creator else {}))
    with engine.connect() as connection:
        context.configure(connection=connection, version_table_schema="public")
        migration = context.get_context()
        known = {script.revision for script in context.script.walk_revisions()}
        newer = sorted(set(migration.get_current_heads()) - known)
        if newer:
            # A later release migrated this database (migrations only go forward): this
            # release's code rolling back must leave its schema and definitions alone,
            # not fail on a revision it has never heard of (db/upgrade.py SchemaAhead).
            config.attributes["schema_ahead"] = newer
        else:
            with context.begin_transaction():
                if with_definitions:
                    config.attributes["definitions_rebuilt"] = definitions.rebuild(
                        connection,
                        context.run_migrations,
                        pending=lambda: set(migration.get_current_heads()) != set(context.script.get_heads()),
                    )
                else:
                    context.run_migrations()
