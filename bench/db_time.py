"""`python -m bench.db_time`: where the database time of a posting goes.

N calls of ledger.commit_posting() (bench/sql/commit_posting.pgbench, the statement
common/ sends) by pgbench, in sessions that set pg_stat_statements.track = all (so the
statements run inside the function and its triggers are counted, foreign-key checks
included) and track_functions = all (so each PL/pgSQL function and trigger function
reports its own time). The stack's Postgres preloads pg_stat_statements
(emulators/stack.py); both settings are a superuser's, so the sessions log in as the
cluster's superuser over the Unix socket and SET ROLE to the ledger's owner.

Counters are read before and after and subtracted, never reset. The denominator is
the top-level commit_posting() statement's own total time: each row is a share of it.
"""

from __future__ import annotations

import json
import os
import re
import time

import click

from emulators import logins
from emulators.stack import Stack

SQL = "SELECT coalesce(json_agg(s), '[]') FROM ({}) s"
STATEMENTS = SQL.format(
    "SELECT queryid, toplevel, calls, total_exec_time AS ms, query FROM pg_stat_statements"
    " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'ledger')"
)
FUNCTIONS = SQL.format(
    "SELECT schemaname || '.' || funcname AS name, calls, total_time AS ms, self_time AS self_ms"
    " FROM pg_stat_user_functions"
)
# What each statement serves, by the first pattern its text matches.
GUARDS = [
    ("outbox row", r"\boutbox\b"),
    ("statement-level trigger (balance, entries present)", r"new_entries"),
    ("idempotency key (its unique index)", r"idempotency|request_hash"),
    ("seal / hash chain", r"seal|chain_links|digest"),
    ("lots", r"\blots?\b|lot_movements|lot_extensions"),
    ("spend limits", r"spend_"),
    ("foreign-key check", r"for key share"),
    ("posting rule", r"posting_rule|refuse"),
    ("wallet rows (balances, locks)", r"\bwallets\b"),
    ("entries", r"\bentries\b"),
    ("transactions", r"\btransactions\b"),
]


def guard(query: str) -> str:
    text = query.lower()
    return next((name for name, pattern in GUARDS if re.search(pattern, text)), "other")


def _snapshot(stack: Stack) -> tuple[dict, dict]:
    statements = {(r["queryid"], r["toplevel"]): r for r in json.loads(stack.psql(STATEMENTS) or "[]")}
    functions = {r["name"]: r for r in json.loads(stack.psql(FUNCTIONS, database="ledger") or "[]")}
    return statements, functions


def _diff(after: dict, before: dict) -> list[dict]:
    rows = []
    for key, row in after.items():
        old = before.get(key, {})
        calls = row["calls"] - old.get("calls", 0)
        if calls > 0:
            rows.append({**row, **{k: row[k] - old.get(k, 0) for k in ("calls", "ms", "self_ms") if k in row}})
    return rows


def prepare(stack: Stack) -> None:
    """pg_stat_statements in the postgres database (its view reads the whole cluster;
    the ledger's own database stays as its migrations made it)."""
    if "pg_stat_statements" not in stack.psql("SHOW shared_preload_libraries"):
        raise SystemExit("Postgres was started without pg_stat_statements: restart the stack (make down; make dev)")
    stack.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


def run_postings(stack: Stack, wallets: list[int], postings: int, clients: int) -> None:
    from bench.pgbench import DIRECT

    options = f"-c pg_stat_statements.track=all -c track_functions=all -c role={logins.OWNER}"
    stack._as_pg(
        [
            str(stack.pg_bin / "pgbench"),
            *("-h", str(stack.pg_dir), "-p", str(stack.ports["postgres"]), "-U", logins.SUPERUSER),
            *("-n", "-M", "prepared", "-c", str(clients), "-t", str(max(1, postings // clients))),
            *("-D", f"first={wallets[0]}", "-D", f"count={len(wallets)}", "-f", str(DIRECT[1]), "ledger"),
        ],
        env={**os.environ, "PGOPTIONS": options},
    )
    # each backend flushes its function counters as it exits
    for _ in range(50):
        if stack.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'").strip() == "0":
            break
        time.sleep(0.1)


def report(statements: list[dict], functions: list[dict], top: int) -> str:
    posting = [r for r in statements if r["toplevel"] and "commit_posting" in r["query"]]
    total_ms, postings = sum(r["ms"] for r in posting), sum(r["calls"] for r in posting)
    if not postings:
        raise SystemExit("no commit_posting() call was counted")
    per = lambda ms: ms * 1000 / postings  # noqa: E731  (microseconds per posting)
    rows = [
        f"{postings:,} postings, {per(total_ms):.1f} µs each inside Postgres (the top-level statement)",
        "",
        "| statement inside the posting | guard | calls per posting | µs per posting | share |",
        "|---|---|---:|---:|---:|",
    ]
    nested = sorted((r for r in statements if not r["toplevel"]), key=lambda r: -r["ms"])
    for r in nested[:top]:
        text = " ".join(r["query"].split())[:90].replace("|", "\\|")
        rows.append(
            f"| `{text}` | {guard(r['query'])} | {r['calls'] / postings:.2f} | {per(r['ms']):.1f}"
            f" | {r['ms'] / total_ms:.1%} |"
        )
    rows += ["", "| function (its time without the functions it calls) | calls per posting | µs per posting | share |"]
    rows.append("|---|---:|---:|---:|")
    for r in sorted(functions, key=lambda r: -r["self_ms"])[:top]:
        rows.append(
            f"| {r['name']} | {r['calls'] / postings:.2f} | {per(r['self_ms']):.1f} | {r['self_ms'] / total_ms:.1%} |"
        )
    return "\n".join(rows)


@click.command()
@click.option("--postings", default=20_000, show_default=True, help="commit_posting() calls counted.")
@click.option("--clients", default=1, show_default=True, help="pgbench clients (1: no lock waits in the figures).")
@click.option("--wallets", default=10_000, show_default=True, help="Wallets the transfers pick from.")
@click.option("--top", default=20, show_default=True, help="Rows of each table.")
@click.option("--profile", default="dev", show_default=True, help="Which local stack to drive.")
def main(postings: int, clients: int, wallets: int, top: int, profile: str) -> None:
    stack = Stack(profile)
    os.environ.update(stack.in_process_env())
    from bench import events, setup

    stack.stop_service("scheduler")  # an ERP export tick must not land in the count
    prepare(stack)
    data = setup.prepare(stack, wallets)
    first = events.high_water(stack)
    before = _snapshot(stack)
    run_postings(stack, data.wallets, postings, clients)
    after = _snapshot(stack)
    setup.mark_events_published(stack, first)  # pgbench's postings have no consumer
    click.echo(report(_diff(after[0], before[0]), _diff(after[1], before[1]), top))


if __name__ == "__main__":
    main()
