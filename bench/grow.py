"""`python -m bench.grow`: a grown ledger (tens of millions of entries) in a database of
its own on a local stack's Postgres, kept between runs (docs/benchmarks.md#the-grown-ledger).

The database is made as the stack makes its own: owned by the schema's owner, brought
up to date by `python -m db upgrade` (migrations and db/schema/). Rows are generated
server-side (INSERT .. SELECT over generate_series), one chunk per database transaction,
by the superuser over the stack's Unix socket (psql) with `session_replication_role =
replica`: the guards' triggers (and the foreign keys' checks) are off for the load only,
so every column a trigger would set is set here, by the same rule:

  - explicit ids, so each row's ids are computed, not looked up; the identities are
    moved past them at the end;
  - a chunk's rows carry its own database transaction id as created_xact (transactions
    and entries alike): chunks commit one after another, so commit order is id order;
  - customer entries carry their running balance (the wallet's balance before the chunk
    plus a window sum); wallets get balance, entry_count, lot_balance, last_activity_at;
  - idempotency keys, usage ids and payment references are unique (`grow-<n>`);
  - each transaction's outbox row is there, published; the ERP stream's cursor, the
    balance horizon and the system accounts' checkpoints are set at the seed's end (the
    checkpoints summed once from the entries), and the hash chain is extended over the
    seed by ledger.extend_chain() itself: the live jobs start caught up.

Secondary indexes of the big tables are dropped before a load larger than what the
tables hold and rebuilt after it (their definitions are kept in the marker until then,
so an interrupted load rebuilds them on the next run), then ANALYZE.

Shapes (the visit pattern in _CHUNK): customers in IDR and USD (one in five), half of
the traffic on 1 % of them (the heavy users, with deep histories), visits of 8
transactions (a top-up, five usages, a transfer to another customer, a bonus credited as
a lot that expires 4 years after it), created_at spread in order over 3 years; a few
enterprise trees (a root, 10 divisions, 10 teams each) funded and allocated through
ledger.commit_posting() before the bulk. What was seeded is recorded in
public.grown_ledger: a database already holding the asked entries is reused.
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import sys
import time
from typing import Any

import click
import pg8000.native

from common.adapters.reconciliation import find_violations
from emulators import database, logins
from emulators.stack import Stack

VISIT = 8  # transactions per visit of a customer: see _CHUNK's slots
ASSETS = (("IDR", 0, "Indonesian rupiah"), ("USD", 2, "US dollar"))
BIG_TABLES = ("ledger.transactions", "ledger.entries", "ledger.outbox", "ledger.lots", "ledger.lot_movements")
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

_MARKER = """
CREATE TABLE IF NOT EXISTS public.grown_ledger (
  only_row       boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  customers      bigint NOT NULL,
  first_customer bigint NOT NULL,
  transactions   bigint NOT NULL DEFAULT 0,
  entries        bigint NOT NULL DEFAULT 0,
  trees          integer NOT NULL,
  dropped_indexes text[] NOT NULL DEFAULT '{}',
  updated_at     timestamptz NOT NULL DEFAULT now()
)"""

# One chunk: transactions c0 .. c0 + n - 1 of the pattern, ids from t0 (entries from
# e0 = 2 t0 ...). Slot c % 8 of a visit: 0 top-up 10,000; 1, 2, 4 usage of 100..999;
# 3 transfer of 2,000 to the customer five places on (the same asset); 5 bonus of 500 as
# a lot; 6, 7 usage of 250..999, which spend the bonus lot first, as
# ledger.commit_posting()'s debit_with_lots does (60_lots.sql): together at least 500, so
# a visit's lot is spent within it and a wallet never piles up open lots (a visit split
# across two chunks leaves its lot partly open). A visit leaves its customer at least
# 3,505 richer and never below zero, and the bonus lots never above the balance.
_CHUNK = """
BEGIN;
SET LOCAL session_replication_role = replica;
SET LOCAL work_mem = '256MB';
CREATE TEMP TABLE s ON COMMIT DROP AS
SELECT g, c, slot, i, (i + 5) % {W} AS j,
       CASE WHEN i % 5 = 4 THEN 'USD' ELSE 'IDR' END AS asset,
       CASE slot WHEN 0 THEN 'topup' WHEN 3 THEN 'transfer' WHEN 5 THEN 'bonus' ELSE 'usage' END AS action,
       CASE slot WHEN 0 THEN 10000 WHEN 3 THEN 2000 WHEN 5 THEN 500
                 WHEN 6 THEN 250 + (c * 7919) % 750 WHEN 7 THEN 250 + (c * 7919) % 750
                 ELSE 100 + (c * 7919) % 900 END::bigint AS amount,
       {lo}::timestamptz + ({hi}::timestamptz - {lo}::timestamptz) * ((g + {done})::float8 / {total}) AS at
  FROM (SELECT g, c, c % 8 AS slot,
               CASE WHEN (c / 8) % 2 = 0 THEN ((c / 16) * 7919) % {heavy}
                    ELSE ((c / 16) * 999983) % {W} END AS i
          FROM (SELECT g, {c0} + g AS c FROM generate_series(CAST(0 AS bigint), {n} - 1) g) x) y;
INSERT INTO ledger.transactions (id, idempotency_key, request_hash, action, asset_code, amount, wallet_id,
                                 counterparty_wallet_id, external_ref, usage_id, product, tenant, created_xact,
                                 effective_at, created_at)
OVERRIDING SYSTEM VALUE
SELECT {t0} + g, 'grow-' || c, 'seed', action, asset, amount, {w0} + i,
       CASE WHEN action = 'transfer' THEN {w0} + j END,
       CASE WHEN action = 'topup' THEN 'psp-' || c END,
       CASE WHEN action = 'usage' THEN 'u-' || c END, CASE WHEN action = 'usage' THEN 'gpu-minutes' END,
       CASE action WHEN 'topup' THEN 'payments' WHEN 'usage' THEN 'metering' ELSE 'backoffice' END,
       pg_current_xact_id(), at, at
  FROM s ORDER BY g;
INSERT INTO ledger.entries (id, transaction_id, wallet_id, asset_code, amount, balance_after, created_at, created_xact)
OVERRIDING SYSTEM VALUE
SELECT x.id, x.tid, x.wallet_id, x.asset, x.amount,
       CASE WHEN x.customer THEN w.balance + sum(x.amount) OVER (PARTITION BY x.wallet_id ORDER BY x.id) END,
       x.at, pg_current_xact_id()
  FROM (SELECT {e0} + 2 * s.g + leg.n AS id, {t0} + s.g AS tid, leg.wallet_id, s.asset, leg.amount, leg.customer, s.at
          FROM s CROSS JOIN LATERAL (VALUES
            (0, CASE s.action WHEN 'topup' THEN CASE s.asset WHEN 'IDR' THEN {funding_IDR} ELSE {funding_USD} END
                              WHEN 'bonus' THEN CASE s.asset WHEN 'IDR' THEN {promotion_IDR} ELSE {promotion_USD} END
                              ELSE {w0} + s.i END,
             -s.amount, s.action IN ('usage', 'transfer')),
            (1, CASE s.action WHEN 'usage' THEN CASE s.asset WHEN 'IDR' THEN {revenue_IDR} ELSE {revenue_USD} END
                              WHEN 'transfer' THEN {w0} + s.j ELSE {w0} + s.i END,
             s.amount, s.action <> 'usage')
          ) AS leg(n, wallet_id, amount, customer)) x
  LEFT JOIN ledger.wallets w ON w.id = x.wallet_id AND x.customer
 ORDER BY x.id;
INSERT INTO ledger.outbox (transaction_id, created_at, published_at)
SELECT {t0} + g, at, at FROM s ORDER BY g;
CREATE TEMP TABLE took ON COMMIT DROP AS
WITH v AS (
  SELECT g, c, slot, amount, at, lag(g, 1) OVER w AS g1, lag(c, 1) OVER w AS c1, lag(amount, 1) OVER w AS a1,
         lag(g, 2) OVER w AS g2, lag(c, 2) OVER w AS c2, lag(amount, 2) OVER w AS a2
    FROM s WINDOW w AS (ORDER BY c))
-- slot 6 spends from the bonus just before it; slot 7 what slot 6 left of the bonus two before
SELECT CASE slot WHEN 6 THEN g1 ELSE g2 END AS bonus_g, g AS usage_g, at,
       CASE slot WHEN 6 THEN least(a1, amount) ELSE least(amount, a2 - least(a2, a1)) END AS amount
  FROM v
 WHERE (slot = 6 AND c1 = c - 1) OR (slot = 7 AND c2 = c - 2);
DELETE FROM took WHERE amount <= 0;
CREATE TEMP TABLE l ON COMMIT DROP AS
WITH lots AS (
  INSERT INTO ledger.lots (wallet_id, transaction_id, amount, remaining, expires_at, created_at, updated_at)
  SELECT {w0} + s.i, {t0} + s.g, s.amount, s.amount - coalesce(t.amount, 0), s.at + interval '4 years', s.at,
         coalesce(t.last_at, s.at)
    FROM s LEFT JOIN (SELECT bonus_g, sum(amount) AS amount, max(at) AS last_at FROM took GROUP BY bonus_g) t
      ON t.bonus_g = s.g
   WHERE s.action = 'bonus' ORDER BY s.g
  RETURNING id, wallet_id, transaction_id, amount, remaining, created_at)
SELECT * FROM lots;
INSERT INTO ledger.lot_movements (lot_id, transaction_id, amount, created_at)
SELECT id, transaction_id, amount, created_at FROM l
UNION ALL
SELECT l.id, {t0} + took.usage_g, -took.amount, took.at FROM took JOIN l ON l.transaction_id = {t0} + took.bonus_g
ORDER BY 1, 2;
UPDATE ledger.wallets w
   SET balance = w.balance + d.amount, entry_count = w.entry_count + d.legs,
       lot_balance = w.lot_balance + coalesce(lb.amount, 0), last_activity_at = d.last_at, updated_at = d.last_at
  FROM (SELECT wallet_id, sum(amount) AS amount, count(*) AS legs, max(created_at) AS last_at
          FROM ledger.entries WHERE id BETWEEN {e0} AND {e0} + 2 * {n} - 1 AND balance_after IS NOT NULL
         GROUP BY wallet_id) d
  LEFT JOIN (SELECT wallet_id, sum(remaining) AS amount FROM l GROUP BY wallet_id) lb ON lb.wallet_id = d.wallet_id
 WHERE w.id = d.wallet_id;
UPDATE public.grown_ledger SET transactions = transactions + {n}, entries = entries + 2 * {n}, updated_at = now();
COMMIT;
"""

# The jobs' state at the seed's end, recomputed from the rows (as the superuser, the
# checkpoints' and horizon's guards being triggers): every transaction is committed.
_CAUGHT_UP = """
BEGIN;
SET LOCAL session_replication_role = replica;
CREATE TEMP TABLE last ON COMMIT DROP AS
SELECT created_xact, id FROM ledger.transactions ORDER BY created_xact DESC, id DESC LIMIT 1;
UPDATE ledger.balance_horizon h SET after_xact = last.created_xact, after_id = last.id, updated_at = now() FROM last;
INSERT INTO ledger.balance_checkpoints AS c (wallet_id, asset_code, horizon_xact, horizon_id, balance, entry_count)
SELECT e.wallet_id, e.asset_code, last.created_xact, last.id, sum(e.amount), count(*)
  FROM ledger.entries e CROSS JOIN last WHERE e.balance_after IS NULL
 GROUP BY e.wallet_id, e.asset_code, last.created_xact, last.id
ON CONFLICT (wallet_id) DO UPDATE SET horizon_xact = excluded.horizon_xact, horizon_id = excluded.horizon_id,
  balance = excluded.balance, entry_count = excluded.entry_count, updated_at = now();
-- the stream opened at the seed's end (as a ledger that went live with its ERP then):
-- everything from its start to its cursor is in a batch, trivially
UPDATE erp.cursors c SET start_xact = last.created_xact, start_id = last.id,
       after_xact = last.created_xact, after_id = last.id, updated_at = now()
  FROM last WHERE c.name = 'erp';
UPDATE ledger.outbox SET published_at = created_at WHERE published_at IS NULL;
SELECT setval(pg_get_serial_sequence('ledger.transactions', 'id'), (SELECT max(id) FROM ledger.transactions));
SELECT setval(pg_get_serial_sequence('ledger.entries', 'id'), (SELECT max(id) FROM ledger.entries));
SELECT setval(pg_get_serial_sequence('ledger.wallets', 'id'), (SELECT max(id) FROM ledger.wallets));
COMMIT;
"""


def database_dsn(stack: Stack, name: str) -> dict[str, Any]:
    return {**stack.owner_dsn(), "database": name}


def ensure_database(stack: Stack, name: str) -> dict[str, Any]:
    """The database, created as the stack creates its own and brought up to date."""
    if not _NAME.match(name):
        raise click.BadParameter(f"not a plain database name: {name!r}")
    if not stack.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip():
        stack.psql(f"CREATE DATABASE {name} OWNER {logins.OWNER}")
    dsn = database_dsn(stack, name)
    database.migrate(dsn)
    return dsn


def _setup(con: pg8000.native.Connection, customers: int, trees: int) -> dict[str, Any]:
    """Assets, customers and trees, once; returns the marker."""
    con.run(_MARKER)
    found = con.run("SELECT customers, first_customer, transactions, entries, trees FROM public.grown_ledger")
    if found:
        return dict(zip(("customers", "first_customer", "transactions", "entries", "trees"), found[0], strict=True))
    customers -= customers % 5  # the transfer's counterparty, five places on, has the same asset
    for code, scale, description in ASSETS:
        if not con.run("SELECT 1 FROM ledger.assets WHERE code = :c", c=code):
            con.run("SELECT ledger.create_asset(:c, CAST(:s AS smallint), :d)", c=code, s=scale, d=description)
    _seed_trees(con, trees)
    first = con.run("SELECT coalesce(max(id), 0) + 1 FROM ledger.wallets")[0][0]
    con.run(
        "INSERT INTO ledger.wallets (id, owner_id, asset_code, model, root_id, path) OVERRIDING SYSTEM VALUE"
        " SELECT :f + g, 'cust-' || g, CASE WHEN g % 5 = 4 THEN 'USD' ELSE 'IDR' END, 'personal', :f + g,"
        " ARRAY[:f + g] FROM generate_series(0, CAST(:n AS bigint) - 1) g",
        f=first,
        n=customers,
    )
    con.run("SELECT setval(pg_get_serial_sequence('ledger.wallets', 'id'), (SELECT max(id) FROM ledger.wallets))")
    con.run(
        "INSERT INTO public.grown_ledger (customers, first_customer, trees) VALUES (:c, :f, :t)",
        c=customers,
        f=first,
        t=trees,
    )
    return {"customers": customers, "first_customer": first, "transactions": 0, "entries": 0, "trees": trees}


def _seed_trees(con: pg8000.native.Connection, trees: int) -> None:
    """Enterprise trees (a root, 10 divisions of 10 teams), funded and allocated through
    ledger.commit_posting(), the guards on, as the demo seeds its own."""
    funding = database._system_account(con, "IDR", "funding")
    for tree in range(trees):
        root = con.run(
            "INSERT INTO ledger.wallets (owner_id, asset_code, model) VALUES (:o, 'IDR', 'enterprise') RETURNING id",
            o=f"corp-{tree}",
        )[0][0]
        database._post(con, f"grow-tree-{root}", "topup", "IDR", 10_000_000, funding, root, p_external_ref=f"t-{root}")
        for division in range(10):
            parent = _member(con, f"corp-{tree}-d{division}", root)
            database._post(con, f"grow-alloc-{parent}", "allocate", "IDR", 500_000, root, parent)
            for team in range(10):
                member = _member(con, f"corp-{tree}-d{division}-t{team}", parent)
                database._post(con, f"grow-alloc-{member}", "allocate", "IDR", 20_000, parent, member)


def _member(con: pg8000.native.Connection, owner: str, parent: int) -> int:
    return con.run(
        "INSERT INTO ledger.wallets (owner_id, asset_code, model, parent_id) VALUES (:o, 'IDR', 'enterprise', :p)"
        " RETURNING id",
        o=owner,
        p=parent,
    )[0][0]


def _secondary_indexes(con: pg8000.native.Connection) -> list[str]:
    """Definitions of the big tables' indexes that back no constraint."""
    rows = con.run(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " WHERE i.indrelid = ANY (CAST(:tables AS regclass[]))"
        " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) ORDER BY 1",
        tables=list(BIG_TABLES),
    )
    return [row[0] for row in rows]


def _rebuild_indexes(stack: Stack, name: str, con: pg8000.native.Connection) -> None:
    dropped = con.run("SELECT dropped_indexes FROM public.grown_ledger")[0][0]
    if dropped:
        print(f"  rebuilding {len(dropped)} indexes", file=sys.stderr, flush=True)
        stack.psql("SET maintenance_work_mem = '512MB';\n" + ";\n".join(dropped) + ";", database=name)
        con.run("UPDATE public.grown_ledger SET dropped_indexes = '{}'")


def _psql(stack: Stack, sql: str, name: str) -> None:
    try:
        stack.psql(sql, database=name)
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"psql failed: {error.stderr.strip()[-2000:]}") from None


def _system_accounts(con: pg8000.native.Connection) -> dict[str, int]:
    rows = con.run("SELECT system_role || '_' || asset_code, id FROM ledger.wallets WHERE kind = 'system'")
    return dict(rows)


def grow(stack: Stack, name: str, entries: int, customers: int, trees: int, chunk: int) -> dict[str, Any]:
    """Seed `name` until it holds at least `entries` seeded entries; returns what it did."""
    dsn = ensure_database(stack, name)
    con = pg8000.native.Connection(**dsn)
    try:
        marker = _setup(con, customers, trees)
        _rebuild_indexes(stack, name, con)  # an interrupted load's
        wanted = max(0, (entries - marker["entries"] + 1) // 2)  # transactions, two entries each
        report = {"database": name, "seeded_before": marker["entries"], "transactions": wanted, "seconds": 0.0}
        if not wanted:
            return report
        started = time.monotonic()
        held = con.run("SELECT count(*) FROM ledger.entries")[0][0]
        if 2 * wanted > held:
            dropped = _secondary_indexes(con)
            con.run("UPDATE public.grown_ledger SET dropped_indexes = CAST(:d AS text[])", d=dropped)
            stack.psql(
                "".join(f"DROP INDEX ledger.{d.split()[3 if d.startswith('CREATE UNIQUE') else 2]};" for d in dropped),
                database=name,
            )
        accounts = _system_accounts(con)
        lo = con.run(
            "SELECT coalesce(max(created_at), now() - interval '3 years')::text FROM ledger.transactions"
            " WHERE idempotency_key ~ '^grow-[0-9]+$'"  # the bulk's keys, not the trees' (posted at now())
        )[0][0]
        hi = con.run("SELECT (now() - interval '1 minute')::text")[0][0]
        done = 0
        while done < wanted:
            n = min(chunk, wanted - done)
            t0 = con.run("SELECT coalesce(max(id), 0) + 1 FROM ledger.transactions")[0][0]
            e0 = con.run("SELECT coalesce(max(id), 0) + 1 FROM ledger.entries")[0][0]
            sql = _CHUNK.format(
                W=marker["customers"],
                heavy=max(5, marker["customers"] // 100),
                w0=marker["first_customer"],
                c0=marker["transactions"] + done,
                n=n,
                t0=t0,
                e0=e0,
                done=done,
                total=wanted,
                lo=f"'{lo}'",
                hi=f"'{hi}'",
                **accounts,
            )
            _psql(stack, sql, name)
            done += n
            rate = done / (time.monotonic() - started)
            print(
                f"  {2 * done:,} of {2 * wanted:,} entries ({2 * rate:,.0f} entries/s,"
                f" {2 * (wanted - done) / (2 * rate) / 60:.1f} min left)",
                file=sys.stderr,
                flush=True,
            )
        load_s = time.monotonic() - started
        _rebuild_indexes(stack, name, con)
        stack.psql(_CAUGHT_UP, database=name)
        stack.psql("ANALYZE", database=name)
        indexed_s = time.monotonic() - started
        linked = _extend_chain(con)
        chained_s = time.monotonic() - started
        # A ledger that has run for years has been vacuumed and frozen as it grew
        # (docs/database.md#vacuum-and-freezing): its pages are all-visible, so history
        # reads are index-only. A bulk load leaves none so; without this, the first
        # measurement would race autovacuum's pass over the whole seed.
        stack.psql("VACUUM (FREEZE, ANALYZE)", database=name)
        report.update(
            load_s=round(load_s, 1),
            indexes_analyze_s=round(indexed_s - load_s, 1),
            chain_s=round(chained_s - indexed_s, 1),
            vacuum_freeze_s=round(time.monotonic() - started - chained_s, 1),
            chain_linked=linked,
            seconds=round(time.monotonic() - started, 1),
            entries_per_s=round(2 * wanted / load_s),
        )
        return report
    finally:
        con.close()


# A transaction's canonical text (db/schema/88_hash_chain.sql's ledger.chain_text), for a
# range of transactions at once: the function reads one transaction a call, which at
# tens of millions is hours; this is the same text, joined instead (the smoke test
# compares the two on every seeded row).
_ROW_HASHES = """
WITH e AS (
  SELECT e.transaction_id, array_agg(e.id ORDER BY e.id) AS ids,
         string_agg(E'\\nE ' || concat_ws(',', ledger.chain_field(e.id::text),
                      ledger.chain_field(e.transaction_id::text),
                      ledger.chain_field(e.wallet_id::text), ledger.chain_field(e.asset_code),
                      ledger.chain_field(e.amount::text), ledger.chain_field(e.balance_after::text),
                      ledger.chain_field(ledger.chain_utc(e.created_at))), '' ORDER BY e.id) AS text
    FROM ledger.entries e WHERE e.transaction_id BETWEEN :lo AND :hi GROUP BY e.transaction_id)
SELECT t.id, t.created_xact::text, coalesce(e.ids, '{}'),
       sha256(convert_to('ledger-chain-v1' || E'\\nT ' || concat_ws(',',
         ledger.chain_field(t.id::text), ledger.chain_field(t.created_xact::text), ledger.chain_field(t.tenant),
         ledger.chain_field(t.idempotency_key), ledger.chain_field(t.request_hash), ledger.chain_field(t.action),
         ledger.chain_field(t.asset_code), ledger.chain_field(t.amount::text), ledger.chain_field(t.wallet_id::text),
         ledger.chain_field(t.counterparty_wallet_id::text), ledger.chain_field(t.external_ref),
         ledger.chain_field(t.usage_id), ledger.chain_field(t.product), ledger.chain_field(t.description),
         ledger.chain_field(t.voids_transaction_id::text), ledger.chain_field(t.metadata::text),
         ledger.chain_field(t.actor::text), ledger.chain_field(ledger.chain_utc(t.effective_at)),
         ledger.chain_field(ledger.chain_utc(t.created_at))) || coalesce(e.text, ''), 'UTF8'))
  FROM ledger.transactions t LEFT JOIN e ON e.transaction_id = t.id
 WHERE t.id BETWEEN :lo AND :hi AND (t.created_xact, t.id) > (CAST(:xact AS xid8), :after)
 ORDER BY t.created_xact, t.id"""


def _extend_chain(con: pg8000.native.Connection, page: int = 200_000) -> int:
    """The hash chain over the seed, as ledger.extend_chain() would link it: row hashes
    computed a range at a time in SQL, each chain hash over the one before in Python,
    the links copied in. Every transaction is committed (nothing else writes here), and
    the seed's commit order is id order, so ranges of ids are ranges of the chain."""
    head = con.run(
        "SELECT position, transaction_id, created_xact::text, chain_hash FROM ledger.chain_links"
        " ORDER BY position DESC LIMIT 1"
    )
    position, after, xact, chain = head[0] if head else (0, 0, "0", bytes(32))
    last = con.run("SELECT coalesce(max(id), 0) FROM ledger.transactions")[0][0]
    lo, linked = con.run("SELECT coalesce(min(id), 1) FROM ledger.transactions WHERE id > :a", a=after)[0][0], 0
    while lo <= last:
        rows = con.run(_ROW_HASHES, lo=lo, hi=lo + page - 1, xact=xact, after=after)
        lines = []
        for tid, created_xact, ids, row in rows:
            chain = hashlib.sha256(chain + row).digest()
            position += 1
            ids_text = "{" + ",".join(map(str, ids)) + "}"
            lines.append(f"{position}\t{tid}\t{created_xact}\t{ids_text}\t\\\\x{row.hex()}\t\\\\x{chain.hex()}\n")
        if lines:
            con.run(
                "COPY ledger.chain_links (position, transaction_id, created_xact, entry_ids, row_hash, chain_hash)"
                " FROM STDIN",
                stream=io.BytesIO("".join(lines).encode()),
            )
        linked += len(rows)
        lo += page
        print(f"  hash chain: {linked:,} linked", file=sys.stderr, flush=True)
    return linked


def check(stack: Stack, name: str) -> dict[str, list[list[Any]]]:
    """find_violations over the whole grown ledger."""
    con = pg8000.native.Connection(**database_dsn(stack, name))
    try:
        con.run("SET statement_timeout = 0")
        return find_violations(con.run)
    finally:
        con.close()


def disk(con: pg8000.native.Connection) -> dict[str, int]:
    """Entries, bytes of entries + transactions with their indexes and TOAST."""
    size, count = con.run(
        "SELECT pg_total_relation_size('ledger.entries') + pg_total_relation_size('ledger.transactions'),"
        " (SELECT count(*) FROM ledger.entries)"
    )[0]
    return {"bytes": size, "entries": count}


@click.command()
@click.option("--entries", default=50_000_000, show_default=True, help="Seeded entries to hold at least.")
@click.option("--database", "name", default="ledger_scale", show_default=True, help="Database on the stack's Postgres.")
@click.option("--customers", default=1_000_000, show_default=True, help="Customer wallets (first seed only).")
@click.option("--trees", default=20, show_default=True, help="Enterprise trees of 111 wallets (first seed only).")
@click.option("--chunk", default=500_000, show_default=True, help="Transactions per database transaction.")
@click.option("--profile", default="dev", show_default=True, help="Which local stack's Postgres.")
@click.option("--skip-check", is_flag=True, help="Skip find_violations afterwards (long at 50M).")
def main(entries: int, name: str, customers: int, trees: int, chunk: int, profile: str, skip_check: bool) -> None:
    stack = Stack(profile)
    report = grow(stack, name, entries, customers, trees, chunk)
    print(report)
    if not skip_check:
        started = time.monotonic()
        violations = check(stack, name)
        print(f"find_violations: {violations or 'none'} ({time.monotonic() - started:.1f} s)")
        if violations:
            sys.exit(1)


if __name__ == "__main__":
    main()
