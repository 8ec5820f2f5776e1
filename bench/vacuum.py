"""`python -m bench.vacuum`: whether autovacuum keeps up with the append-only tables
(docs/database.md#vacuum-and-freezing).

Per table: rows inserted since its last vacuum, its last autovacuum and how many it
had, the age of its oldest unfrozen transaction id (age(relfrozenxid)), and the share
of its pages the visibility map marks all-visible (from pg_visibility when the
extension is installed, else pg_class.relallvisible / relpages, which the last vacuum
or analyze set). "Keeping up" is that share staying high and the frozen age bounded
while a load runs. Given `--load`, it grows the ledger in `--steps` chunks
(bench/erp_export.py's seed) and prints a table after each; otherwise one table.

Other benchmarks call `snapshot(run)` and `table(rows)` before and after their load.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import click
import pg8000.native

from emulators.stack import Stack

TABLES = (
    "ledger.entries",
    "ledger.transactions",
    "ledger.lot_movements",
    "ledger.spend_charges",
    "ledger.chain_links",
    "ledger.audit_log",
    "ledger.outbox",
)

_STATS = """
SELECT c.oid::regclass::text, s.n_live_tup, s.n_ins_since_vacuum, s.n_dead_tup, s.last_autovacuum,
       s.autovacuum_count, age(c.relfrozenxid), c.relpages, c.relallvisible
  FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
 WHERE c.oid::regclass::text = ANY(CAST(:tables AS text[]))
 ORDER BY array_position(CAST(:tables AS text[]), c.oid::regclass::text)"""
_VISIBLE = "SELECT count(*) FILTER (WHERE all_visible), count(*) FROM pg_visibility_map(CAST(:t AS regclass))"


def snapshot(run: Callable[..., list[list[Any]]], tables: tuple[str, ...] = TABLES) -> list[dict[str, Any]]:
    """One row per table, as a dict; `run` is a connection's run (owner or pg_monitor)."""
    exact = bool(run("SELECT 1 FROM pg_extension WHERE extname = 'pg_visibility'"))
    rows = []
    for name, live, inserted, dead, last, count, frozen_age, pages, all_visible in run(_STATS, tables=list(tables)):
        if exact:
            all_visible, pages = run(_VISIBLE, t=name)[0]
        rows.append(
            {
                "table": name,
                "live_rows": live,
                "n_ins_since_vacuum": inserted,
                "dead_rows": dead,
                "last_autovacuum": last,
                "autovacuum_count": count,
                "frozen_xid_age": frozen_age,
                "all_visible_fraction": (all_visible / pages) if pages else 1.0,
                "visibility_source": "pg_visibility" if exact else "relallvisible",
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| table | live rows | inserted since vacuum | dead | autovacuums | last autovacuum | age(relfrozenxid)"
        " | all-visible |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in rows:
        last = row["last_autovacuum"].strftime("%H:%M:%S") if row["last_autovacuum"] else "never"
        lines.append(
            f"| {row['table']} | {row['live_rows']:,} | {row['n_ins_since_vacuum']:,} | {row['dead_rows']:,}"
            f" | {row['autovacuum_count']} | {last} | {row['frozen_xid_age']:,} | {row['all_visible_fraction']:.0%} |"
        )
    return "\n".join(lines)


@click.command()
@click.option("--load", default=0, show_default=True, help="Transactions to post while watching (0: just look).")
@click.option("--steps", default=5, show_default=True, help="Chunks the load is posted in, a table after each.")
@click.option("--settle", default=0.0, show_default=True, help="Seconds to wait after the load, then a last table.")
@click.option("--profile", default="dev", show_default=True, help="Which local stack to look at.")
def main(load: int, steps: int, settle: float, profile: str) -> None:
    stack = Stack(profile)
    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        print(table(snapshot(con.run)))
        if load:
            from bench.erp_export import seed

            for step in range(steps):
                seed(stack, load // steps)
                print(f"\nafter {(step + 1) * (load // steps):,} transactions\n")
                print(table(snapshot(con.run)))
            if settle:
                time.sleep(settle)
                print(f"\n{settle:.0f} s after the load\n")
                print(table(snapshot(con.run)))
    finally:
        con.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
