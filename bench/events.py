"""Events of a run: how many the postings wrote, how many reached Pub/Sub, and how long
after their posting (outbox created_at to published_at, i.e. commit, relay and publish);
and the money invariants after it."""

from __future__ import annotations

import time

import pg8000.native

from emulators.stack import Stack


def owner_sql(stack: Stack, sql: str, **params: object) -> list[list[object]]:
    """One statement as the ledger's owner, on a connection of its own."""
    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        return con.run(sql, **params)
    finally:
        con.close()


def money_violations(stack: Stack) -> dict[str, list[list[object]]]:
    """What common.adapters.reconciliation.find_violations finds broken (empty: intact)."""
    from common.adapters.reconciliation import find_violations

    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        return find_violations(lambda sql: con.run(sql))
    finally:
        con.close()


def high_water(stack: Stack) -> int:
    return int(owner_sql(stack, "SELECT coalesce(max(transaction_id), 0) FROM ledger.outbox")[0][0])


def summary(stack: Stack, after_id: int, settle_s: float = 15.0) -> tuple[int, int, list[float | None]]:
    """(events written, events still pending, [p50, p95, p99] lag in ms) for the events
    after `after_id`, once the relays have had up to `settle_s` to catch up."""
    pending_sql = "SELECT count(*) FROM ledger.outbox WHERE transaction_id > :a AND published_at IS NULL"
    deadline = time.monotonic() + settle_s
    while owner_sql(stack, pending_sql, a=after_id)[0][0] and time.monotonic() < deadline:
        time.sleep(0.5)
    written, pending, *lags = owner_sql(
        stack,
        "SELECT count(*), count(*) FILTER (WHERE published_at IS NULL),"
        " percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP"
        "   (ORDER BY extract(epoch FROM published_at - created_at) * 1000)"
        " FROM ledger.outbox WHERE transaction_id > :a",
        a=after_id,
    )[0]
    return int(written), int(pending), list(lags[0] or [None, None, None])


def table(written: int, pending: int, lags: list[float | None]) -> str:
    p50, p95, p99 = ("–" if lag is None else f"{lag:.1f}" for lag in lags)
    return "\n".join(
        [
            "| events written | published | still pending | lag p50 ms | lag p95 ms | lag p99 ms |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {written:,} | {written - pending:,} | {pending:,} | {p50} | {p95} | {p99} |",
        ]
    )
