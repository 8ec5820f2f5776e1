"""The current definitions (db/schema/) are applied with the migrations by
`python -m db upgrade`, tracked by checksum, in one transaction, and re-created whole: a
changed signature leaves no old overload, a failing file or a lock not had in time
changes nothing, nothing outside them is dropped along, plain Alembic commands leave
them be, and a forced re-creation gives back exactly the schema a fresh database gets."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from db import definitions
from emulators import database as stack_database
from emulators.stack import Stack
from tests.support import sql


def dsn(stack: Stack, database: str) -> dict:
    return {**stack.owner_dsn(), "database": database}


def upgrade(stack: Stack, database: str) -> None:
    stack_database.migrate(dsn(stack, database))


def schema_dump(stack: Stack, database: str) -> str:
    owner = stack.owner_dsn()
    dump = subprocess.run(
        [str(stack.pg_bin / "pg_dump"), "--schema-only", "-T", "public.schema_definitions"]
        + ["-h", str(owner["host"]), "-p", str(owner["port"]), "-U", str(owner["user"]), database],
        env={**os.environ, "PGPASSWORD": str(owner["password"])},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # pg_dump guards its output with a random key per run
    return re.sub(r"^\\(un)?restrict \S+$", "", dump, flags=re.M)


@pytest.fixture
def scratch(stack):
    """A database of its own on the test cluster, for re-creating definitions freely."""
    name = f"scratch_{uuid.uuid4().hex[:10]}"
    stack.psql(f"CREATE DATABASE {name} OWNER ledger_owner")
    engine = create_engine(stack_database.owner_url(dsn(stack, name)))
    yield name, engine
    engine.dispose()
    stack.psql(f"DROP DATABASE {name} WITH (FORCE)")


def commit_posting_oid(stack: Stack, database: str = "ledger") -> int:
    con = stack_database.owner_connection(dsn(stack, database))
    try:
        return con.run("SELECT 'ledger.commit_posting'::regproc::oid::bigint")[0][0]
    finally:
        con.close()


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.sql"):
        old.unlink()
    for name, body in files.items():
        (directory / name).write_text(body)
    return directory


def overloads(engine, name: str) -> list[str]:
    with engine.connect() as con:
        rows = con.execute(
            text("SELECT oid::regprocedure::text FROM pg_proc WHERE proname = :n ORDER BY 1"), {"n": name}
        )
        return [row[0] for row in rows]


def test_the_applied_definitions_are_the_files_on_disk(stack):
    recorded = sql(stack, "SELECT file, sha256 FROM public.schema_definitions")
    assert dict(recorded) == definitions.files() != {}


def test_migrating_again_with_nothing_changed_recreates_nothing(stack):
    before = commit_posting_oid(stack)
    upgrade(stack, "ledger")
    assert commit_posting_oid(stack) == before


def test_a_forced_re_creation_gives_back_the_fresh_schema(stack, scratch):
    name, engine = scratch
    upgrade(stack, name)
    fresh = schema_dump(stack, name)
    assert "FUNCTION ledger.commit_posting(" in fresh and "CREATE TRIGGER entries_must_balance" in fresh
    with engine.begin() as con:
        assert definitions.rebuild(con, force=True)
    assert schema_dump(stack, name) == fresh
    # and the test stack's own database, migrated the same way, has that schema too
    assert schema_dump(stack, "ledger") == fresh


def test_a_changed_signature_leaves_no_old_overload(scratch, tmp_path):
    _, engine = scratch
    with engine.begin() as con:
        con.execute(text("CREATE SCHEMA defs"))
    one = "CREATE FUNCTION defs.f(a integer) RETURNS integer LANGUAGE sql AS $$ SELECT a $$;\n"
    two = "CREATE FUNCTION defs.f(a integer, b integer) RETURNS integer LANGUAGE sql AS $$ SELECT a + b $$;\n"
    for body, expected in ((one, ["defs.f(integer)"]), (two, ["defs.f(integer,integer)"])):
        directory = write(tmp_path / "schema", {"10_f.sql": body})
        with engine.begin() as con:
            assert definitions.rebuild(con, directory=directory, schemas=["defs"])
        assert overloads(engine, "f") == expected
    # unchanged files: nothing is dropped or applied again
    oid = overloads(engine, "f")
    with engine.begin() as con:
        assert not definitions.rebuild(con, directory=directory, schemas=["defs"])
    assert overloads(engine, "f") == oid


def test_a_failing_file_changes_nothing(scratch, tmp_path):
    _, engine = scratch
    with engine.begin() as con:
        con.execute(text("CREATE SCHEMA defs"))
    good = write(
        tmp_path / "good", {"10_f.sql": "CREATE FUNCTION defs.f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;"}
    )
    with engine.begin() as con:
        definitions.rebuild(con, directory=good, schemas=["defs"])
        applied = definitions.recorded(con)
    bad = write(
        tmp_path / "bad",
        {
            "10_f.sql": "CREATE FUNCTION defs.f() RETURNS int LANGUAGE sql AS $$ SELECT 2 $$;",
            "20_broken.sql": "CREATE FUNCTION defs.g( RETURNS int;",
        },
    )
    with pytest.raises(RuntimeError, match="bad/20_broken.sql"), engine.begin() as con:
        definitions.rebuild(con, directory=bad, schemas=["defs"])
    with engine.begin() as con:
        assert con.execute(text("SELECT defs.f()")).scalar() == 1
        assert definitions.recorded(con) == applied


def test_a_routine_that_a_table_depends_on_is_never_dropped_silently(scratch, tmp_path):
    _, engine = scratch
    with engine.begin() as con:
        con.execute(text("CREATE SCHEMA defs"))
    body = "CREATE FUNCTION defs.f() RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT {} $$;"
    with engine.begin() as con:
        definitions.rebuild(con, directory=write(tmp_path / "v1", {"10_f.sql": body.format(1)}), schemas=["defs"])
        con.execute(text("CREATE TABLE defs.t (x integer DEFAULT defs.f())"))
    with pytest.raises(Exception, match="depend"), engine.begin() as con:
        definitions.rebuild(con, directory=write(tmp_path / "v2", {"10_f.sql": body.format(2)}), schemas=["defs"])
    default = "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'defs.t'::regclass"
    with engine.begin() as con:
        assert con.execute(text(default)).scalar() == "defs.f()"


def test_plain_alembic_commands_leave_the_definitions_be(stack, scratch):
    name, engine = scratch
    upgrade(stack, name)
    before = commit_posting_oid(stack, name)
    with engine.begin() as con:
        con.execute(text("DELETE FROM public.schema_definitions"))  # as if a file had changed
    config = Config(str(Path(definitions.__file__).parents[1] / "alembic.ini"))
    config.set_main_option("script_location", str(Path(definitions.__file__).parent))
    config.attributes["url"] = stack_database.owner_url(dsn(stack, name))
    command.current(config)
    command.upgrade(config, "heads")
    command.stamp(config, "heads")
    assert commit_posting_oid(stack, name) == before
    assert stack_database.migrate(dsn(stack, name)), "python -m db upgrade re-creates them"
    assert commit_posting_oid(stack, name) != before


def test_a_deploy_that_cannot_have_the_tables_in_time_changes_nothing(stack, scratch):
    name, engine = scratch
    upgrade(stack, name)
    before = commit_posting_oid(stack, name)
    holder = engine.connect()
    holder.begin()
    holder.execute(text("SELECT 1 FROM ledger.wallets LIMIT 1"))  # a reader in a long transaction
    try:
        with pytest.raises(DBAPIError, match="55P03"), engine.begin() as con:
            definitions.rebuild(con, force=True, lock_timeout="200ms")
    finally:
        holder.close()
    assert commit_posting_oid(stack, name) == before


def test_a_deploy_waits_its_turn_and_tries_again(stack, scratch):
    """The reader holds a table past the lock timeout: the first try gives up, a later
    one re-creates the definitions."""
    name, engine = scratch
    upgrade(stack, name)
    before = commit_posting_oid(stack, name)
    with engine.begin() as con:
        con.execute(text("DELETE FROM public.schema_definitions"))
    holder = engine.connect()
    holder.begin()
    holder.execute(text("SELECT 1 FROM ledger.entries LIMIT 1"))
    release = threading.Timer(definitions_lock_timeout_s() + 0.5, holder.close)
    release.start()
    try:
        assert stack_database.migrate(dsn(stack, name))
    finally:
        release.cancel()
        holder.close()
    assert commit_posting_oid(stack, name) != before


def definitions_lock_timeout_s() -> float:
    assert definitions.LOCK_TIMEOUT.endswith("s") and not definitions.LOCK_TIMEOUT.endswith("ms")
    return float(definitions.LOCK_TIMEOUT[:-1])


def test_nothing_outside_the_definitions_is_dropped_along(stack, scratch):
    name, engine = scratch
    upgrade(stack, name)
    with engine.begin() as con:
        con.execute(text("CREATE VIEW public.event_report AS SELECT transaction_id FROM ledger.outbox_events"))
    with pytest.raises(Exception, match="depend"), engine.begin() as con:
        definitions.rebuild(con, force=True)
    with engine.begin() as con:
        assert con.execute(text("SELECT count(*) FROM public.event_report")).scalar() == 0


def test_no_migration_needs_the_append_only_guards_off(stack, scratch):
    """0005 backfills the export order of transactions written before 0004: with the
    append-only guard in place (a plain UPDATE would be refused), it still runs, so a
    deploy never has to switch a guard off."""
    name, engine = scratch
    config = Config(str(Path(definitions.__file__).parents[1] / "alembic.ini"))
    config.set_main_option("script_location", str(Path(definitions.__file__).parent))
    config.attributes["url"] = stack_database.owner_url(dsn(stack, name))
    command.upgrade(config, "0004_posting_batch")
    with engine.begin() as con:
        con.execute(text("INSERT INTO ledger.assets (code, scale) VALUES ('OLD', 0)"))
        con.execute(
            text(
                "INSERT INTO ledger.transactions (idempotency_key, request_hash, action, asset_code, amount, wallet_id,"
                " created_xact) VALUES ('before-0004', 'h', 'topup', 'OLD', 1, 1, NULL)"
            )
        )
        con.execute(
            text(
                "CREATE FUNCTION public.refuse_change() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'append_only'; END $$"
            )
        )
        con.execute(
            text(
                "CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE ON ledger.transactions"
                " FOR EACH ROW EXECUTE FUNCTION public.refuse_change()"
            )
        )
    command.upgrade(config, "0005_erp_export")
    with engine.begin() as con:
        assert con.execute(text("SELECT created_xact::text FROM ledger.transactions")).scalar() == "1"
        assert (
            con.execute(text("SELECT tgenabled FROM pg_trigger WHERE tgname = 'transactions_append_only'")).scalar()
            == "O"
        )


def test_an_upgrade_gives_existing_assets_their_new_system_accounts(stack, scratch):
    """0013 and 0014 add an account per existing asset while the definitions, the tree
    trigger among them, are dropped: each new account is still its own tree's root,
    and the ledger with assets upgrades at all."""
    name, engine = scratch
    config = Config(str(Path(definitions.__file__).parents[1] / "alembic.ini"))
    config.set_main_option("script_location", str(Path(definitions.__file__).parent))
    config.attributes["url"] = stack_database.owner_url(dsn(stack, name))
    command.upgrade(config, "0012_automation_firings")
    with engine.begin() as con:
        con.execute(text("INSERT INTO ledger.assets (code, scale) VALUES ('OLD', 0), ('ELDER', 2)"))
    upgrade(stack, name)
    with engine.begin() as con:
        accounts = con.execute(
            text(
                "SELECT asset_code, system_role, root_id = id AND path = ARRAY[id] FROM ledger.wallets"
                " WHERE kind = 'system' ORDER BY 1, 2"
            )
        ).all()
    assert [tuple(row) for row in accounts] == [
        ("ELDER", "dormant", True),
        ("ELDER", "migration", True),
        ("OLD", "dormant", True),
        ("OLD", "migration", True),
    ]
