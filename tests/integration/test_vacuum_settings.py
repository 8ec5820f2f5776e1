"""Autovacuum for the append-only tables (migration 0018, docs/database.md#vacuum-and-freezing):
vacuumed after a fixed number of inserts whatever their size, freezing what they visit;
the outbox, whose rows are updated once, after a fixed number of dead rows. And the
measurement other benchmarks call, bench.vacuum.snapshot."""

from __future__ import annotations

import pytest

from bench.vacuum import TABLES, snapshot, table
from tests.support import owner, sql

INSERT_ONLY = {
    "ledger.entries": "200000",
    "ledger.transactions": "100000",
    "ledger.lot_movements": "100000",
    "ledger.spend_charges": "100000",
    "ledger.chain_links": "100000",
    "ledger.audit_log": "100000",
}


def reloptions(stack, name: str) -> dict[str, str]:
    options = sql(stack, "SELECT reloptions FROM pg_class WHERE oid = CAST(:t AS regclass)", t=name)[0][0] or []
    return dict(option.split("=", 1) for option in options)


@pytest.mark.parametrize("name", sorted(INSERT_ONLY))
def test_an_insert_only_table_is_vacuumed_by_insert_count_and_frozen_early(stack, name):
    assert reloptions(stack, name) == {
        "autovacuum_vacuum_insert_scale_factor": "0",
        "autovacuum_vacuum_insert_threshold": INSERT_ONLY[name],
        "autovacuum_freeze_min_age": "0",
    }


def test_the_outbox_is_vacuumed_by_dead_row_count_and_not_frozen_early(stack):
    options = reloptions(stack, "ledger.outbox")
    assert options["autovacuum_vacuum_scale_factor"] == "0" and options["autovacuum_vacuum_threshold"] == "20000"
    assert options["autovacuum_vacuum_insert_scale_factor"] == "0"
    assert "autovacuum_freeze_min_age" not in options


def test_the_snapshot_names_each_table_with_its_figures(stack):
    con = owner(stack)
    try:
        rows = snapshot(con.run)
    finally:
        con.close()
    assert [row["table"] for row in rows] == list(TABLES)
    assert all(0.0 <= row["all_visible_fraction"] <= 1.0 and row["frozen_xid_age"] >= 0 for row in rows)
    assert table(rows).count("\n") == len(TABLES) + 1
