"""Where the database's code lives: migrations (db/migrations/) hold what runs once, the
current definitions (db/schema/) what can be re-created, and each SQL function is
defined in exactly one file."""

import re
from collections import Counter
from pathlib import Path

DB = Path(__file__).resolve().parents[2] / "db"
MIGRATIONS = sorted((DB / "migrations").glob("*.sql"))
DEFINITIONS = sorted((DB / "schema").glob("*.sql"))
FUNCTION = re.compile(r"^CREATE (?:OR REPLACE )?(?:FUNCTION|PROCEDURE) ([\w.]+)\s*\(", re.M | re.I)


def statements(paths: list[Path]) -> list[str]:
    """Each file's top-level statements, without comments or the bodies of functions and
    DO blocks (a function's body may well insert or update rows)."""
    found = []
    for path in paths:
        sql = re.sub(r"--[^\n]*", "", path.read_text())
        sql = re.sub(r"\$(\w*)\$.*?\$\1\$", "$$", sql, flags=re.S)
        found += [f"{path.name}: {' '.join(part.split())}" for part in sql.split(";") if part.strip()]
    return found


def offending(paths: list[Path], pattern: str) -> list[str]:
    return [statement for statement in statements(paths) if re.match(r"[\w.]+: " + pattern, statement, re.I)]


def test_migrations_hold_no_re_creatable_code():
    code = (
        r"(CREATE (OR REPLACE )?(FUNCTION|PROCEDURE|TRIGGER|CONSTRAINT TRIGGER|VIEW|MATERIALIZED VIEW|ROLE|POLICY)"
        r"|GRANT|REVOKE|COMMENT ON|ALTER DEFAULT PRIVILEGES|DO)\b"
    )
    assert offending(MIGRATIONS, code) == []


def test_definitions_hold_no_tables_indexes_or_data_changes():
    once = r"(CREATE (UNIQUE )?(TABLE|INDEX|SCHEMA|SEQUENCE|TYPE)|ALTER TABLE|INSERT|UPDATE|DELETE|TRUNCATE|COPY)\b"
    assert offending(DEFINITIONS, once) == []


def test_the_statement_reader_sees_what_each_kind_holds():
    assert any(": CREATE TABLE ledger.entries" in s for s in statements(MIGRATIONS))
    assert any(": CREATE FUNCTION ledger.commit_posting(" in s for s in statements(DEFINITIONS))
    assert any(": GRANT EXECUTE ON FUNCTION" in s for s in statements(DEFINITIONS))


def test_no_sql_function_is_defined_in_more_than_one_place():
    definitions = Counter()
    for path in [*MIGRATIONS, *DEFINITIONS]:
        for name in FUNCTION.findall(path.read_text()):
            definitions[name.lower()] += 1
    assert definitions, "no function definitions found: the pattern is stale"
    assert [name for name, count in definitions.items() if count > 1] == []


def test_definition_files_apply_in_a_stated_order():
    # 10_refusals.sql, 20_guards.sql, ...: the number orders them, the name says the concept
    assert DEFINITIONS and all(re.fullmatch(r"\d{2}_[a-z_]+\.sql", path.name) for path in DEFINITIONS)
    assert len({path.name[:2] for path in DEFINITIONS}) == len(DEFINITIONS)
