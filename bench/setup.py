"""Bench data: an asset of its own, 1,000 funded wallets and one hot wallet, made in SQL
as the ledger owner (through ledger.commit_posting, so the invariants hold), then ANALYZEd."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import pg8000.native

from bench import http_client
from emulators.stack import Stack

ASSET = "BENCH"
FUNDING_PER_WALLET = 10**14  # times 10,001 wallets stays within int64


@dataclass(frozen=True)
class BenchData:
    wallets: list[int]
    hot_wallet: int


BENCH_PRINCIPAL = "bench"


def register_caller(stack: Stack, dsn: dict[str, object] | None = None) -> str:
    """The benchmark's caller: every scope over every wallet, with limits far above what
    one machine sends (a deployment's services get theirs from their roles). Its token
    goes on every HTTP request the benchmarks send. `dsn`: another database than the
    stack's own (as its owner), for functions serving that one (bench/scale_http.py)."""
    from common.auth.callers import SCOPES
    from emulators.database import owner_connection, register_principal

    con = owner_connection(dsn or stack.owner_dsn())
    try:
        unlimited = {c: {"per_second": 1_000_000, "burst": 1_000_000} for c in ("money", "read", "admin")}
        con.run(
            "INSERT INTO ledger.roles (name, scopes, rate_limits, description) VALUES ('bench', CAST(:s AS text[]),"
            " CAST(:l AS jsonb), 'benchmarks') ON CONFLICT DO NOTHING",
            s=list(SCOPES),
            l=json.dumps(unlimited),
        )
        register_principal(con, BENCH_PRINCIPAL, stack.issuer, "service", "bench", None, [("bench", "all", None)])
    finally:
        con.close()
    token = stack.token(BENCH_PRINCIPAL, lifetime_s=24 * 3600)
    http_client.authorize(token)
    return token


def prepare(stack: Stack, wallet_count: int) -> BenchData:
    """`wallet_count` wallets plus a hot one, created in one INSERT (so their ids are
    contiguous, as the pgbench baseline needs) and funded by one statement. Registers the
    benchmark's caller too (register_caller)."""
    register_caller(stack)
    prefix = f"bench{wallet_count}-"
    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        if not con.run("SELECT 1 FROM ledger.assets WHERE code = :a", a=ASSET):
            con.run("SELECT ledger.create_asset(:a, CAST(0 AS smallint), 'benchmark units')", a=ASSET)
        wallets = [
            row[0]
            for row in con.run(
                "SELECT id FROM ledger.wallets WHERE asset_code = :a AND owner_id LIKE :p ORDER BY id",
                a=ASSET,
                p=prefix + "%",
            )
        ]
        if len(wallets) != wallet_count + 1:
            if wallets:
                raise SystemExit(
                    f"bench wallets {prefix}* are incomplete; reset the dev stack (make down; rm -r .stack/dev)"
                )
            funding = system_account(con, "funding")
            wallets = [
                row[0]
                for row in con.run(
                    "INSERT INTO ledger.wallets (owner_id, asset_code) SELECT :p || g, :a"
                    " FROM generate_series(0, :n) g ORDER BY g RETURNING id",
                    p=prefix,
                    a=ASSET,
                    n=wallet_count,
                )
            ]
            # one top-up per wallet (a posting's legs follow its action's rule), all in one
            # statement, each with its own payment reference (a reference posts once)
            con.run(
                "SELECT ledger.commit_posting(:k || w, 'bench-setup', 'topup', :a, p.amt, w, NULL,"
                " ARRAY[p.funding, w], ARRAY[-p.amt, p.amt], :k || w)"
                " FROM (SELECT CAST(:amt AS bigint) AS amt, CAST(:f AS bigint) AS funding) p,"
                " unnest(CAST(:ws AS bigint[])) AS w",
                k=f"bench-setup-{prefix}",
                a=ASSET,
                amt=FUNDING_PER_WALLET,
                f=funding,
                ws=wallets,
            )
        _give_history(con, funding_wallets=wallets)
        for table in ("wallets", "transactions", "entries", "outbox"):
            con.run(f"ANALYZE ledger.{table}")
        return BenchData(wallets=wallets[1:], hot_wallet=wallets[0])
    finally:
        con.close()


HISTORY = 20_000


def _give_history(con: pg8000.native.Connection, funding_wallets: list[int]) -> None:
    """On a young ledger, post a history of transfers first. Statistics taken on near-empty
    tables make Postgres plan foreign-key checks as sequential scans, which connections
    keep while the tables grow: throughput then decays within seconds (as on a fresh
    `make dev`). A ledger with a history plans them as index lookups."""
    if con.run("SELECT count(*) FROM ledger.transactions")[0][0] >= HISTORY:
        return
    first, count = funding_wallets[1], len(funding_wallets) - 1
    con.run(
        "SELECT ledger.commit_posting('bench-history-' || g, 'bench', 'transfer', :a, 1, src, dst,"
        " ARRAY[src, dst], ARRAY[-1, 1]::bigint[])"
        " FROM generate_series(1, :n) g, LATERAL (SELECT :first + (g * 7919) % :count AS src,"
        " :first + (g * 7919 + 1 + g % (:count - 1)) % :count AS dst) w",
        a=ASSET,
        n=HISTORY,
        first=first,
        count=count,
    )


def voidable_transactions(stack: Stack, wallet: int, count: int) -> list[int]:
    """`count` fresh usages of one unit on `wallet`, for void benchmarks to reverse."""
    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        revenue = system_account(con, "revenue")
        ids = []
        for _ in range(count):
            ids.append(
                con.run(
                    "SELECT transaction_id FROM ledger.commit_posting(:k, 'bench', 'usage', :a, 1, :w, NULL,"
                    " CAST(:legs AS bigint[]), CAST(:amts AS bigint[]), NULL, :u, 'bench')",
                    k=f"bench-voidable-{uuid.uuid4()}",
                    a=ASSET,
                    w=wallet,
                    legs=[wallet, revenue],
                    amts=[-1, 1],
                    u=f"voidable-{uuid.uuid4()}",  # a usage id posts once, across runs too
                )[0][0]
            )
        return ids
    finally:
        con.close()


def system_account(con: pg8000.native.Connection, role: str) -> int:
    return con.run(
        "SELECT id FROM ledger.wallets WHERE kind = 'system' AND system_role = :r AND asset_code = :a", r=role, a=ASSET
    )[0][0]


def post_moves(
    con: pg8000.native.Connection, action: str, moves: list[tuple[int, int, int]], expiry: str | None = None
) -> None:
    """(wallet, source, amount) postings of one action, in one statement through
    ledger.commit_posting() (allocate: the source is the wallet's parent; `expiry`: each
    credit becomes a lot)."""
    con.run(
        "SELECT ledger.commit_posting('bench-' || :run || '-' || m.n, 'bench', :action, :a, m.amount, m.wallet,"
        " CASE WHEN :action = 'allocate' THEN m.source END, ARRAY[m.source, m.wallet], ARRAY[-m.amount, m.amount],"
        " p_lot_expires_at => CAST(:expiry AS timestamptz))"
        " FROM unnest(CAST(:w AS bigint[]), CAST(:s AS bigint[]), CAST(:amt AS bigint[])) WITH ORDINALITY"
        " AS m(wallet, source, amount, n)",
        run=uuid.uuid4().hex,
        action=action,
        a=ASSET,
        w=[wallet for wallet, _, _ in moves],
        s=[source for _, source, _ in moves],
        amt=[amount for _, _, amount in moves],
        expiry=expiry,
    )


def tree_member(stack: Stack, funds: int) -> int:
    """An enterprise pool with credit and a member holding `funds` of it: what the
    allocate and reclaim functions' cold-start requests move along."""
    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        pool = con.run(
            "INSERT INTO ledger.wallets (owner_id, asset_code, model) VALUES (:o, :a, 'enterprise') RETURNING id",
            o=f"bench-pool-{uuid.uuid4().hex[:8]}",
            a=ASSET,
        )[0][0]
        member = con.run(
            "INSERT INTO ledger.wallets (owner_id, asset_code, model, parent_id) VALUES (:o, :a, 'enterprise', :p)"
            " RETURNING id",
            o=f"bench-member-{uuid.uuid4().hex[:8]}",
            a=ASSET,
            p=pool,
        )[0][0]
        funding = system_account(con, "funding")
        post_moves(con, "topup", [(pool, funding, funds * 2)])
        post_moves(con, "allocate", [(member, pool, funds)])
        return member
    finally:
        con.close()


def empty_erp_stream(stack: Stack) -> str:
    """A new ERP export stream, starting after everything the ledger holds now."""
    name = f"cold-{uuid.uuid4().hex[:8]}"
    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        con.run("SELECT erp.open_stream(:s)", s=name)
    finally:
        con.close()
    return name


def mark_events_published(stack: Stack, after_transaction_id: int) -> int:
    """Mark the events of postings after `after_transaction_id` as published. The core
    runs post through PostgresLedger.post() alone, without the after-commit relay; their
    events are not for any consumer, and left pending they would have the scheduled
    sweeper publish hundreds of thousands of them in the middle of later measurements."""
    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        con.run(
            "UPDATE ledger.outbox SET published_at = clock_timestamp()"
            " WHERE transaction_id > :a AND published_at IS NULL",
            a=after_transaction_id,
        )
        return con.row_count
    finally:
        con.close()


def funding_account(stack: Stack) -> int:
    """The bench asset's funding account: the one treasury every top-up draws on."""
    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        return system_account(con, "funding")
    finally:
        con.close()
