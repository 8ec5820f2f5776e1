"""The refusal codes come from one list: every code the database's SQL can raise is in
common.errors.DATABASE_REFUSALS, and every code there is one the SQL raises."""

import re
from pathlib import Path

from common.adapters.postgres import translate
from common.errors import DATABASE_REFUSALS, GuardViolation, NotFound, Refused

DB = Path(__file__).resolve().parents[2] / "db"
# the SQL without its comments: a code named in a comment is not raised
SCHEMA = re.sub(r"--[^\n]*", "", "\n".join(path.read_text() for path in sorted((DB / "schema").glob("*.sql"))))
# A code built at run time: 'wallet_' || <a wallet's status>, for a status that is not
# 'active' (the statuses come from the wallets table's CHECK constraint).
DYNAMIC_WALLET_STATUS = re.compile(r"PERFORM refuse\('wallet_'\s*\|\|\s*\w+\.status")


def wallet_statuses() -> set[str]:
    migrations = "\n".join(path.read_text() for path in sorted((DB / "migrations").glob("*.sql")))
    # the table's own, or the latest migration's that replaced it (0014 added dormant)
    checks = re.findall(
        r"(?:status\s+text NOT NULL DEFAULT 'active'|wallets_status_check\s+)\s*CHECK \(status IN \(([^)]*)\)\)",
        migrations,
    )
    return set(re.findall(r"'(\w+)'", checks[-1]))


def codes_the_sql_raises() -> set[str]:
    literal = set(re.findall(r"PERFORM refuse\('([a-z_]+)'\s*,", SCHEMA))
    literal |= set(re.findall(r"MESSAGE = '([a-z_]+)'", SCHEMA))
    dynamic = set()
    if DYNAMIC_WALLET_STATUS.search(SCHEMA):
        dynamic = {f"wallet_{status}" for status in wallet_statuses() - {"active"}}
    # every other way of building a code at run time would escape this test: refuse it
    other = re.findall(r"PERFORM refuse\((?!'[a-z_]+'\s*,)(?!'wallet_'\s*\|\|\s*\w+\.status)[^)]{0,40}", SCHEMA)
    assert other == [], f"a refusal code built in a way this test cannot read: {other}"
    return literal | dynamic


def test_every_code_the_database_raises_is_mapped():
    assert codes_the_sql_raises() - DATABASE_REFUSALS.keys() == set()


def test_every_mapped_code_is_raised_by_the_database():
    assert DATABASE_REFUSALS.keys() - codes_the_sql_raises() == set()


def test_the_statuses_a_wallet_can_be_refused_for_are_read():
    assert {"wallet_frozen", "wallet_closed", "wallet_dormant"} <= codes_the_sql_raises()
    assert "dormant" in wallet_statuses()


def test_a_refusal_becomes_its_class_with_its_code_and_details():
    from pg8000.exceptions import DatabaseError

    raw = DatabaseError({"C": "P0001", "M": "lot_not_found", "D": '{"lot_id": 7}'})
    error = translate(raw)
    assert isinstance(error, NotFound) and error.code == "lot_not_found" and error.details == {"lot_id": 7}
    spent = translate(DatabaseError({"C": "P0001", "M": "insufficient_funds", "D": "{}"}))
    assert isinstance(spent, Refused) and spent.status == 422


def test_a_guard_raises_check_violation_and_maps_to_a_guard_violation():
    from pg8000.exceptions import DatabaseError

    detail = "transaction 1 asset X: 1 legs summing to 5"
    raw = DatabaseError({"C": "23514", "M": "unbalanced_transaction", "D": detail})
    error = translate(raw)
    assert isinstance(error, GuardViolation) and error.status == 500 and error.code == "unbalanced_transaction"
    assert error.details == detail and error.body()["error"]["details"] is None  # logged, not answered
    # a CHECK constraint's own violation is not a code of the list: it stays the driver's error
    check = DatabaseError({"C": "23514", "M": 'new row for relation "wallets" violates check constraint "x"'})
    assert translate(check) is check


def test_a_reference_the_guards_hold_maps_like_the_other_guards():
    """The references the foreign keys held until migration 0019 are raised as
    foreign-key violations (23503) with a code of the list; a foreign key's own
    violation (23503 with a constraint's text) stays the driver's error."""
    from pg8000.exceptions import DatabaseError

    asset = translate(DatabaseError({"C": "23503", "M": "unknown_asset", "D": "transaction 1: no asset NOPE"}))
    assert isinstance(asset, Refused) and asset.status == 422 and asset.code == "unknown_asset"
    wallet = translate(DatabaseError({"C": "23503", "M": "entry_wallet_unknown", "D": "no wallet 9 of asset X"}))
    assert isinstance(wallet, GuardViolation) and wallet.status == 500
    other = DatabaseError({"C": "23503", "M": "violates foreign key", "n": "lots_wallet_id_fkey"})
    assert translate(other) is other


def test_every_raise_and_refusal_is_written_in_a_form_this_test_reads():
    """Otherwise a code could be raised in a way the extraction above does not see."""
    for statement in re.findall(r"\bRAISE\b[^;]*;", SCHEMA):
        flat = " ".join(statement.split())
        assert re.match(r"RAISE EXCEPTION USING ERRCODE = '\w+', MESSAGE = ('[a-z_]+'|p_code)[,;]", flat), flat
    calls = re.findall(r"[\w.]*refuse\s*\(", SCHEMA)
    definitions = re.findall(r"FUNCTION ledger\.refuse\(", SCHEMA)
    performed = re.findall(r"PERFORM refuse\(", SCHEMA)
    assert len(calls) == len(definitions) + len(performed), "call ledger.refuse() as PERFORM refuse(...)"
