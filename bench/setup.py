"""Bench data: an asset of its own, 1,000 funded wallets and one hot wallet, made in SQL
as the ledger owner (through ledger.post, so the invariants hold), then ANALYZEd."""

from __future__ import annotations

from dataclasses import dataclass

import pg8000.native

from emulators.stack import Stack

ASSET = "BENCH"
FUNDING_PER_WALLET = 10**15


@dataclass(frozen=True)
class BenchData:
    wallets: list[int]
    hot_wallet: int


def prepare(stack: Stack, wallet_count: int) -> BenchData:
    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        if not con.run("SELECT 1 FROM ledger.assets WHERE code = :a", a=ASSET):
            con.run("SELECT ledger.create_asset(:a, CAST(0 AS smallint), 'benchmark units')", a=ASSET)
        funding = con.run(
            "SELECT id FROM ledger.wallets WHERE kind = 'system' AND system_role = 'funding' AND asset_code = :a",
            a=ASSET,
        )[0][0]
        wallets = [
            row[0]
            for row in con.run(
                "SELECT id FROM ledger.wallets WHERE asset_code = :a AND kind = 'customer' AND owner_id LIKE 'bench-%'"
                " ORDER BY id LIMIT :n",
                a=ASSET,
                n=wallet_count + 1,
            )
        ]
        missing = wallet_count + 1 - len(wallets)
        if missing > 0:
            created = [
                row[0]
                for row in con.run(
                    "INSERT INTO ledger.wallets (owner_id, asset_code) SELECT 'bench-' || g, :a"
                    " FROM generate_series(1, :n) g RETURNING id",
                    a=ASSET,
                    n=missing,
                )
            ]
            for wallet in created:
                con.run(
                    "SELECT ledger.post(:k, 'bench-setup', 'topup', :a, :amt, :w, NULL, CAST(:legs AS bigint[]),"
                    " CAST(:amts AS bigint[]), 'bench-setup')",
                    k=f"bench-setup-{wallet}",
                    a=ASSET,
                    amt=FUNDING_PER_WALLET,
                    w=wallet,
                    legs=[funding, wallet],
                    amts=[-FUNDING_PER_WALLET, FUNDING_PER_WALLET],
                )
            wallets += created
        for table in ("wallets", "transactions", "entries"):
            con.run(f"ANALYZE ledger.{table}")
        return BenchData(wallets=wallets[1:], hot_wallet=wallets[0])
    finally:
        con.close()
