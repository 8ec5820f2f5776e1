"""Current definitions: the database's code in db/schema/*.sql, re-created around the
migrations whenever it or the migrations changed.

Migrations (db/migrations/, each run once, in order, by Alembic) hold the tables,
columns, indexes, constraints and backfills. Everything that can be re-created
(functions, trigger functions and their triggers, views, roles and grants) is defined
once, as it is now, in db/schema/, one concept per file, applied in file-name order.

A repeatable step in the manner of Flyway's repeatable migrations, on top of Alembic,
run by `python -m db upgrade` (db/upgrade.py) in the one transaction Alembic opens.
When a file's checksum differs from the one recorded in public.schema_definitions, or a
migration is pending:

  1. every table of the managed schemas is locked, all in one statement before anything
     changes, waiting at most LOCK_TIMEOUT (less than the functions' statement timeout,
     so postings queued behind a deploy wait, then go on);
  2. every view, trigger and routine in the managed schemas is dropped, so pending
     migrations run against bare tables and a function whose signature changed leaves
     no stale overload behind;
  3. the pending migrations run;
  4. every db/schema file runs, in name order, and its checksum is recorded.

A deploy therefore lands whole or not at all, and no posting ever sees the ledger
without its guards. Nothing is dropped with CASCADE: should anything outside these
definitions depend on them (a table's default or constraint, a view in another
schema), the drop fails and names it.

The managed schemas belong to this repository: an object created there by hand is
dropped by the next deploy, and a privilege granted by hand on a function or view there
with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy import Connection, text

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
MANAGED_SCHEMAS = ("ledger", "erp")
# (class, key) of the advisory lock deploys serialize on: the two-integer form, apart
# from the one-integer keys the ledger's own functions lock (hashtext(...)).
_DEPLOY_LOCK = {"class": 4242, "key": 1}
# Below the functions' statement timeout (LEDGER_DB_STATEMENT_TIMEOUT_MS, 5 s): a posting
# queued behind a deploy that is waiting for its locks still gets its turn.
LOCK_TIMEOUT = "2s"

_TRACKING_DDL = """
CREATE TABLE IF NOT EXISTS public.schema_definitions (
  file       text PRIMARY KEY,
  sha256     text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)
"""
_TABLES = """
SELECT c.oid::regclass::text FROM pg_class c
 WHERE c.relkind IN ('r', 'p') AND c.relnamespace::regnamespace::text = ANY (:schemas)
 ORDER BY c.oid
"""
_VIEWS = """
SELECT c.oid::regclass::text FROM pg_class c
 WHERE c.relkind = :kind AND c.relnamespace::regnamespace::text = ANY (:schemas)
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1
"""
# Triggers Postgres made itself (foreign keys) or cloned onto partitions go with what
# made them.
_TRIGGERS = """
SELECT format('DROP TRIGGER %I ON %s', t.tgname, t.tgrelid::regclass)
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND c.relnamespace::regnamespace::text = ANY (:schemas)
 ORDER BY 1
"""
_ROUTINES = """
SELECT p.oid::regprocedure::text FROM pg_proc p
 WHERE p.prokind = :kind AND p.pronamespace::regnamespace::text = ANY (:schemas)
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
 ORDER BY 1
"""


def files(directory: Path = SCHEMA_DIR) -> dict[str, str]:
    """File name -> SHA-256 of its bytes, for every definition file."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(directory.glob("*.sql"))}


def recorded(connection: Connection) -> dict[str, str]:
    rows = connection.execute(text("SELECT file, sha256 FROM public.schema_definitions"))
    return {row[0]: row[1] for row in rows}


def rebuild(
    connection: Connection,
    migrate: Callable[[], None] = lambda: None,
    pending: Callable[[], bool] = lambda: False,
    force: bool = False,
    directory: Path = SCHEMA_DIR,
    schemas: Iterable[str] = MANAGED_SCHEMAS,
    lock_timeout: str = LOCK_TIMEOUT,
) -> bool:
    """Run `migrate` inside the definitions' re-creation when anything changed (or
    `force`); returns whether they were re-created. `pending` says whether a migration
    is pending; it is asked once this deploy holds the deploy lock. The caller owns the
    transaction."""
    schemas = list(schemas)
    connection.execute(text("SELECT pg_advisory_xact_lock(:class, :key)"), _DEPLOY_LOCK)
    connection.execute(text("SELECT set_config('lock_timeout', :timeout, true)"), {"timeout": lock_timeout})
    connection.execute(text(_TRACKING_DDL))
    wanted = files(directory)
    if not (force or pending() or recorded(connection) != wanted):
        migrate()
        return False
    lock(connection, schemas)
    drop(connection, schemas)
    migrate()
    apply(connection, directory)
    connection.execute(text("DELETE FROM public.schema_definitions"))
    for name, digest in wanted.items():
        connection.execute(
            text("INSERT INTO public.schema_definitions (file, sha256) VALUES (:f, :s)"), {"f": name, "s": digest}
        )
    return True


def lock(connection: Connection, schemas: list[str]) -> None:
    """Every table of `schemas` in one statement, in creation order, before anything is
    dropped: a deploy that can't have them all in time changes nothing."""
    tables = [row[0] for row in connection.execute(text(_TABLES), {"schemas": schemas})]
    if tables:
        connection.exec_driver_sql(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")


def drop(connection: Connection, schemas: list[str]) -> None:
    """Drop every view, trigger and routine in `schemas`: views first (they call
    routines), then triggers (they name their functions), then the routines. Views and
    routines go in one statement each, so they may depend on one another."""
    for kind, statement in (("v", "DROP VIEW"), ("m", "DROP MATERIALIZED VIEW")):
        _drop_all(connection, statement, _VIEWS, kind, schemas)
    for (statement,) in connection.execute(text(_TRIGGERS), {"schemas": schemas}).all():
        connection.exec_driver_sql(statement)
    for kind, statement in (("f", "DROP FUNCTION"), ("p", "DROP PROCEDURE"), ("a", "DROP AGGREGATE")):
        _drop_all(connection, statement, _ROUTINES, kind, schemas)


def _drop_all(connection: Connection, statement: str, query: str, kind: str, schemas: list[str]) -> None:
    names = [row[0] for row in connection.execute(text(query), {"kind": kind, "schemas": schemas})]
    if names:
        connection.exec_driver_sql(f"{statement} {', '.join(names)}")


def apply(connection: Connection, directory: Path = SCHEMA_DIR) -> None:
    for path in sorted(directory.glob("*.sql")):
        try:
            connection.exec_driver_sql(path.read_text())
        except Exception as error:
            raise RuntimeError(f"applying {path.parent.name}/{path.name} failed: {error}") from error
