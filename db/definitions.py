"""Current definitions: the database's code in db/schema/*.sql, re-created around the
migrations whenever it or the migrations changed.

Migrations (db/migrations/, each run once, in order, by Alembic) hold the tables,
columns, indexes, constraints and backfills. Everything that can be re-created
(functions, trigger functions and their triggers, views, roles and grants) is defined
once, as it is now, in db/schema/, one concept per file, applied in file-name order.

A repeatable step in the manner of Flyway's repeatable migrations, on top of Alembic:
when a file's checksum differs from the one recorded in public.schema_definitions, or
a migration is pending, then in the one transaction Alembic opens:

  1. every view, trigger and routine in the managed schemas is dropped, so pending
     migrations run against bare tables and a function whose signature changed leaves
     no stale overload behind;
  2. the pending migrations run;
  3. every db/schema file runs, in name order, and its checksum is recorded.

A deploy therefore lands whole or not at all, and no posting ever sees the ledger
without its guards: the drop takes the tables' locks until the commit. Nothing is
dropped with CASCADE: should a table's constraint, default or index come to depend on
a routine, the drop fails and names it (such a routine belongs in a migration).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy import Connection, text

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
MANAGED_SCHEMAS = ("ledger", "erp")
# Any constant will do: it only has to be the same for every deploy of this ledger.
_DEPLOY_LOCK = 4_242_001
# How long a deploy waits for a table another transaction holds before it gives up
# (and changes nothing); live postings queue behind a deploy that is waiting.
LOCK_TIMEOUT = "10s"

_TRACKING_DDL = """
CREATE TABLE IF NOT EXISTS public.schema_definitions (
  file       text PRIMARY KEY,
  sha256     text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_DROPS = """
SELECT format('DROP VIEW IF EXISTS %s CASCADE', c.oid::regclass), 1
  FROM pg_class c WHERE c.relkind = 'v' AND c.relnamespace::regnamespace::text = ANY (:schemas)
UNION ALL
SELECT format('DROP MATERIALIZED VIEW IF EXISTS %s CASCADE', c.oid::regclass), 2
  FROM pg_class c WHERE c.relkind = 'm' AND c.relnamespace::regnamespace::text = ANY (:schemas)
UNION ALL
SELECT format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::regclass), 3
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE NOT t.tgisinternal AND c.relnamespace::regnamespace::text = ANY (:schemas)
UNION ALL
SELECT format('DROP %s %s', CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
              p.oid::regprocedure), 4
  FROM pg_proc p WHERE p.pronamespace::regnamespace::text = ANY (:schemas)
ORDER BY 2, 1
"""


def files(directory: Path = SCHEMA_DIR) -> list[tuple[str, str]]:
    """(file name, SHA-256 of its bytes) of every definition file, in apply order."""
    return [(path.name, hashlib.sha256(path.read_bytes()).hexdigest()) for path in sorted(directory.glob("*.sql"))]


def recorded(connection: Connection) -> list[tuple[str, str]]:
    rows = connection.execute(text("SELECT file, sha256 FROM public.schema_definitions ORDER BY file"))
    return [(row[0], row[1]) for row in rows]


def rebuild(
    connection: Connection,
    migrate: Callable[[], None] = lambda: None,
    force: bool = False,
    directory: Path = SCHEMA_DIR,
    schemas: Iterable[str] = MANAGED_SCHEMAS,
) -> bool:
    """Run `migrate` inside the definitions' re-creation when anything changed (or
    `force`); returns whether they were re-created. The caller owns the transaction."""
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DEPLOY_LOCK})
    connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    connection.execute(text(_TRACKING_DDL))
    wanted = files(directory)
    if not force and recorded(connection) == wanted:
        migrate()
        return False
    drop(connection, schemas)
    migrate()
    apply(connection, directory)
    connection.execute(text("DELETE FROM public.schema_definitions"))
    for name, digest in wanted:
        connection.execute(
            text("INSERT INTO public.schema_definitions (file, sha256) VALUES (:f, :s)"), {"f": name, "s": digest}
        )
    return True


def drop(connection: Connection, schemas: Iterable[str] = MANAGED_SCHEMAS) -> None:
    """Drop every view, trigger and routine in `schemas`: views first (they call
    routines), then triggers (they name their functions), then the routines."""
    statements = [row[0] for row in connection.execute(text(_DROPS), {"schemas": list(schemas)})]
    for statement in statements:
        connection.exec_driver_sql(statement)


def apply(connection: Connection, directory: Path = SCHEMA_DIR) -> None:
    for path in sorted(directory.glob("*.sql")):
        try:
            connection.exec_driver_sql(path.read_text())
        except Exception as error:
            raise RuntimeError(f"applying {path.parent.name}/{path.name} failed: {error}") from error
