"""The outbox in Postgres: events waiting to be published, and their marks.

Rows are written by the posting itself (a trigger, in the same database transaction)
and read through `ledger.outbox_events`, which renders each event; this adapter only
reads them and records each publish attempt.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from common.adapters.postgres import Statements

PENDING_BY_ID = """
SELECT transaction_id, event FROM ledger.outbox_events
 WHERE transaction_id = ANY(CAST(:ids AS bigint[])) AND published_at IS NULL
 ORDER BY transaction_id
"""
PENDING_OLDEST = """
SELECT transaction_id, event FROM ledger.outbox_events
 WHERE published_at IS NULL AND created_at < clock_timestamp() - make_interval(secs => CAST(:age AS float8))
 ORDER BY attempts, transaction_id
 LIMIT CAST(:limit AS integer)
"""
# (class, key) of the advisory lock one sweep at a time holds (the migration runs' is
# 4243, the deploy's 4242: common/adapters/migration_store.py, db/definitions.py)
_SWEEP_LOCK = {"c": 4244, "k": 1}
MARK_PUBLISHED = "SELECT ledger.mark_published(CAST(:ids AS bigint[]))"
MARK_FAILED = "SELECT ledger.mark_failed(CAST(:id AS bigint), :error)"
MARK_PUBLISHED_AFTER_COMMIT = "SELECT ledger.mark_published_after_commit(CAST(:ids AS bigint[]))"


class PostgresOutbox(Statements):
    """The sweeper's outbox (database role ledger_relay): marks any pending event."""

    def pending(
        self, transaction_ids: list[int] | None = None, limit: int = 500, min_age_s: float = 0.0
    ) -> list[dict[str, Any]]:
        """Unpublished events: of these transactions, or `limit` of all older than
        `min_age_s`, those that failed least first (then oldest), so rows that keep
        failing hold nothing back."""
        if transaction_ids is not None:
            rows = self._run(PENDING_BY_ID, ids=_ids(transaction_ids))
        else:
            rows = self._run(PENDING_OLDEST, limit=limit, age=min_age_s)
        return [event if isinstance(event, dict) else json.loads(event) for _, event in rows]

    def mark_published(self, transaction_ids: list[int]) -> None:
        if transaction_ids:
            self._run(MARK_PUBLISHED, ids=_ids(transaction_ids))

    def mark_failed(self, transaction_id: int, error: str) -> None:
        self._run(MARK_FAILED, id=transaction_id, error=error[:500])

    @contextmanager
    def sweeping(self) -> Iterator[bool]:
        """Whether this sweep is the only one, held until the block ends (or the process
        dies: a session lock goes with its connection). Two sweeps at once would read the
        same oldest pending events and publish each of them twice."""
        with self._pool.connection() as con:
            got = bool(con.run("SELECT pg_try_advisory_lock(:c, :k)", **_SWEEP_LOCK)[0][0])
            try:
                yield got
            finally:
                if got:
                    con.run("SELECT pg_advisory_unlock(:c, :k)", **_SWEEP_LOCK)

    def backlog(self, stuck_after_s: float, limit: int = 20) -> dict[str, Any]:
        """Unpublished events: how many, the oldest one's age (0 when none is pending, so
        that every sweep gives the backlog alert a figure), and those older than
        `stuck_after_s` (the ones an operator should look at) with their last error."""
        count, oldest = self._run(
            "SELECT count(*), extract(epoch FROM clock_timestamp() - min(created_at))::float8"
            " FROM ledger.outbox WHERE published_at IS NULL"
        )[0]
        stuck = self._run(
            "SELECT transaction_id, attempts, last_error, extract(epoch FROM clock_timestamp() - created_at)::float8"
            " FROM ledger.outbox WHERE published_at IS NULL"
            " AND created_at < clock_timestamp() - make_interval(secs => :s) ORDER BY transaction_id LIMIT :n",
            s=stuck_after_s,
            n=limit,
        )
        return {
            "pending": count,
            "oldest_pending_s": round(oldest, 1) if oldest is not None else 0.0,
            "stuck": [
                {"transaction_id": t, "attempts": a, "last_error": e, "age_s": round(age, 1)} for t, a, e, age in stuck
            ],
        }


class AfterCommitOutbox(PostgresOutbox):
    """The after-commit relay's outbox, in the money functions and the expiry job: their
    roles may mark only the events written in the last minute (80_outbox.sql), and
    record no failure. An event it could not send stays pending for the sweeper, which
    records the attempts."""

    def mark_published(self, transaction_ids: list[int]) -> None:
        if transaction_ids:
            self._run(MARK_PUBLISHED_AFTER_COMMIT, ids=_ids(transaction_ids))

    def mark_failed(self, transaction_id: int, error: str) -> None:
        pass


def _ids(values: list[int]) -> str:
    return "{" + ",".join(str(int(value)) for value in values) + "}"
