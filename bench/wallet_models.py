"""The wallet models under load, straight through common/'s posting path (as the core
runs are): what a tree member's usage, a spend limit, a shared pool and lots cost
against plain personal usage, and how long a roll-up over 1,000 members takes.

Run alone with `python -m bench.wallet_models` against the dev stack, or as part of
`make bench`."""

from __future__ import annotations

import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pg8000.native

from bench import report, runner
from bench.setup import ASSET, post_moves, system_account
from emulators.stack import Stack

DIVISIONS, TEAMS = 20, 980  # with the root: a 3-level tree of 1,000 members
PERSONAL = 1_000
FUNDS = 10**12  # per wallet: a run never runs dry
LOTS_PER_WALLET = 3


@dataclass(frozen=True)
class Trees:
    personal: list[int]  # personal wallets, no lots
    with_lots: list[int]  # personal wallets, each with LOTS_PER_WALLET lots, no other credit
    allocated_root: int
    allocated_teams: list[int]  # members of an allocated tree, funded by allocation
    limited_teams: list[int]  # members of another allocated tree, each with a monthly limit
    shared_root: int
    shared_teams: list[int]  # members of a shared-pool tree (the pool pays)


def _tree(con: pg8000.native.Connection, mode: str, funded: bool, limit: bool) -> tuple[int, list[int]]:
    """A root, DIVISIONS divisions and TEAMS teams below them; with `funded`, every team
    gets FUNDS by allocation down the tree."""
    tag = uuid.uuid4().hex[:8]
    root = con.run(
        "INSERT INTO ledger.wallets (owner_id, asset_code, model, spend_mode) VALUES (:o, :a, 'enterprise', :m)"
        " RETURNING id",
        o=f"bench-ent-{tag}",
        a=ASSET,
        m=mode,
    )[0][0]
    divisions = [
        row[0]
        for row in con.run(
            "INSERT INTO ledger.wallets (owner_id, asset_code, model, parent_id)"
            " SELECT :o || g, :a, 'enterprise', :p FROM generate_series(1, :n) g RETURNING id",
            o=f"bench-div-{tag}-",
            a=ASSET,
            p=root,
            n=DIVISIONS,
        )
    ]
    teams = con.run(
        "INSERT INTO ledger.wallets (owner_id, asset_code, model, parent_id)"
        " SELECT :o || g, :a, 'enterprise', (CAST(:d AS bigint[]))[1 + g % :nd] FROM generate_series(0, :n - 1) g"
        " RETURNING id, parent_id",
        o=f"bench-team-{tag}-",
        a=ASSET,
        d=divisions,
        nd=DIVISIONS,
        n=TEAMS,
    )
    per_team = FUNDS if funded else 0
    per_division = per_team * (TEAMS // DIVISIONS + 1)
    post_moves(con, "topup", [(root, system_account(con, "funding"), per_division * DIVISIONS + FUNDS)])
    if funded:
        post_moves(con, "allocate", [(d, root, per_division) for d in divisions])
        post_moves(con, "allocate", [(team, parent, per_team) for team, parent in teams])
    if limit:
        con.run(
            "INSERT INTO ledger.spend_limits (wallet_id, period, amount)"
            " SELECT unnest(CAST(:t AS bigint[])), 'month', 9000000000000000000",
            t=[team for team, _ in teams],
        )
    return root, [team for team, _ in teams]


def prepare(stack: Stack) -> Trees:
    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        funding = system_account(con, "funding")
        ids = [
            row[0]
            for row in con.run(
                "INSERT INTO ledger.wallets (owner_id, asset_code) SELECT :o || g, :a FROM generate_series(1, :n) g"
                " RETURNING id",
                o=f"bench-wm-{uuid.uuid4().hex[:8]}-",
                a=ASSET,
                n=2 * PERSONAL,
            )
        ]
        personal, with_lots = ids[:PERSONAL], ids[PERSONAL:]
        post_moves(con, "topup", [(w, funding, FUNDS) for w in personal])
        for n in range(LOTS_PER_WALLET):  # lots expiring in 1, 2 and 3 years: usage takes the first
            post_moves(con, "topup", [(w, funding, FUNDS) for w in with_lots], f"{2027 + n}-06-30T00:00:00Z")
        allocated_root, allocated = _tree(con, "allocated", funded=True, limit=False)
        _, limited = _tree(con, "allocated", funded=True, limit=True)
        shared_root, shared = _tree(con, "shared_pool", funded=False, limit=False)
        con.run("ANALYZE ledger.wallets")
        con.run("ANALYZE ledger.lots")
        con.run("ANALYZE ledger.spend_limits")
        return Trees(personal, with_lots, allocated_root, allocated, limited, shared_root, shared)
    finally:
        con.close()


def _usage_worker(wallets: list[int]) -> Callable[[int], Callable[[], str]]:
    from common import bootstrap
    from common.errors import InProgress, Refused
    from common.ledger import commands, postings

    ledger = bootstrap.ledger()
    accounts = ledger.system_accounts(ASSET)

    def make(index: int) -> Callable[[], str]:
        rng = random.Random(2000 + index)

        def act() -> str:
            cmd = commands.Usage(
                wallet_id=rng.choice(wallets), asset=ASSET, amount=1, usage_id=f"wm-{uuid.uuid4()}", product="bench"
            )
            try:
                ledger.post(postings.usage(cmd, accounts), f"bench-wm-{uuid.uuid4()}", "bench", "bench", None)
            except (Refused, InProgress):
                return runner.REFUSED
            return runner.OK

        return act

    return make


def _read_ms(read: Callable[[], object], count: int) -> tuple[float, float]:
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        read()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.99 * (len(samples) - 1)))]


def run(stack: Stack, workers: int, duration_s: float) -> tuple[str, list[runner.Result]]:
    """Prepare the trees, run each usage scenario with `workers` threads, read roll-ups;
    returns the markdown tables and the usage runs' results."""
    from bench import events, setup
    from common import bootstrap

    print("  wallet models: preparing trees of 1,000 members and wallets with lots ...", file=sys.stderr, flush=True)
    before = events.high_water(stack)
    trees = prepare(stack)
    scenarios = [
        (f"usage over {PERSONAL:,} personal wallets (the baseline)", trees.personal),
        (f"usage over {PERSONAL:,} personal wallets holding {LOTS_PER_WALLET} lots each", trees.with_lots),
        (f"usage by {TEAMS} members of an allocated tree", trees.allocated_teams),
        (f"usage by {TEAMS} members, each with a monthly limit", trees.limited_teams),
        (f"usage by {TEAMS} members of a shared pool (one pool row pays)", trees.shared_teams),
    ]
    results = []
    for name, wallets in scenarios:
        print(f"  running: {name} ({workers} workers) ...", file=sys.stderr, flush=True)
        results.append(runner.run(name, workers, duration_s, _usage_worker(wallets)))
    # Postings made here have no after-commit relay (as the core runs): their events
    # are for no consumer, and left pending they would keep the next sweep busy.
    setup.mark_events_published(stack, before)
    queries = bootstrap.ledger_queries()
    division = queries.get_wallet(trees.allocated_teams[0])["parent_id"]
    reads = [
        ("roll-up of the root (1,000 members)", lambda: queries.rollup(trees.allocated_root)),
        ("roll-up of a division (49 members)", lambda: queries.rollup(division)),
        ("members of the root, first page of 100", lambda: queries.members(trees.allocated_root, 0, 100)),
        ("per-lot breakdown of a wallet with 3 lots", lambda: queries.lots(trees.with_lots[0], False)),
    ]
    rows = ["| read | p50 ms | p99 ms |", "|---|---:|---:|"]
    for name, read in reads:
        p50, p99 = _read_ms(read, 200)
        rows.append(f"| {name} | {p50:.2f} | {p99:.2f} |")
    baseline = results[0].throughput
    ratios = ["| scenario | x baseline |", "|---|---:|"] + [
        f"| {result.scenario} | {result.throughput / baseline:.2f}x |" for result in results[1:]
    ]
    return "\n\n".join([report.table(results), "\n".join(ratios), "\n".join(rows)]), results


if __name__ == "__main__":
    import os

    stack = Stack("dev")
    os.environ.update(stack.in_process_env())
    print(run(stack, workers=8, duration_s=10.0)[0])
