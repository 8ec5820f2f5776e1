"""Postgres connections: a small thread-safe pool, prepared statements, and the one
place where transient failures are retried.

pg8000 connections are not thread-safe and functions-framework serves with threads,
so each request borrows a connection. The pool is hand-written rather than
SQLAlchemy's because SQLAlchemy's import alone would cost a cold start more than this
whole module with pg8000 (bench/results/imports.md). Connections are recycled after
`max_age_s` so a long-lived instance does not keep plans cached from an empty table
forever.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from typing import Any, TypeVar

import pg8000.native
from pg8000.core import CoreConnection
from pg8000.exceptions import DatabaseError, InterfaceError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from common import timing
from common.errors import (
    DATABASE_REFUSALS,
    DependencyUnavailable,
    InvalidRequest,
    LedgerError,
    OutcomeUnknown,
    Refused,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected
QUERY_CANCELED = "57014"  # the statement timeout
UNAVAILABLE_SQLSTATE_PREFIXES = ("08", "53", "57P")  # connection, resources, shutdown
LOST_SQLSTATE_PREFIXES = ("08", "57P")  # the session ended under the statement (a terminate, a shutdown)
# A business id's unique index (migration 0009) met a copy that committed while this
# posting ran: posted again, ledger.commit_posting() finds that copy and answers with it.
BUSINESS_ID_INDEXES = {"transactions_tenant_external_ref_unique", "transactions_tenant_usage_id_unique"}


class Connection:
    """A pooled connection that prepares each distinct statement once."""

    def __init__(self, raw: CoreConnection) -> None:
        self.raw = raw
        self.born = time.monotonic()
        self._prepared: dict[str, Any] = {}
        # whether the last run() got as far as sending its statement to be executed
        self.sent = False

    def run(self, sql: str, **params: Any) -> list[list[Any]]:
        self.sent = False
        statement = self._prepared.get(sql)
        if statement is None:
            # Works on native and DB-API connections alike (the Cloud SQL connector
            # hands back the latter).
            statement = self._prepared[sql] = pg8000.native.PreparedStatement(self.raw, sql)
        self.sent = True
        return statement.run(**params)

    def close(self) -> None:
        try:
            self.raw.close()
        except Exception:  # noqa: BLE001 - closing a broken connection may fail too
            pass


class Pool:
    def __init__(self, connect: Callable[[], CoreConnection], size: int, max_age_s: float) -> None:
        self._connect = connect
        self._idle: queue.LifoQueue[Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._max_age_s = max_age_s

    @contextmanager
    def connection(self, wait_s: float = 5.0) -> Iterator[Connection]:
        if not self._slots.acquire(timeout=wait_s):
            raise DependencyUnavailable("no database connection became free in time", code="database_busy")
        con: Connection | None = None
        try:
            try:
                con = self._idle.get_nowait()
            except queue.Empty:
                con = Connection(_translate_connect(self._connect))
            yield con
        except BaseException as error:
            if con is not None and not isinstance(error, (LedgerError, DatabaseError)):
                con.close()  # state unknown after an unexpected error: never reuse it
                con = None
                if isinstance(error, (InterfaceError, OSError)):
                    self.close()  # the server likely restarted: its siblings are dead too
            raise
        finally:
            if con is not None:
                if time.monotonic() - con.born > self._max_age_s:
                    con.close()
                else:
                    self._idle.put(con)
            self._slots.release()

    @contextmanager
    def session(self, wait_s: float = 5.0) -> Iterator[Connection]:
        """A connection of its own, counted in the pool's size and closed at the end,
        never handed to anyone after: for what lives exactly as long as the session (a
        session advisory lock). Driver errors come out as the ledger's (translate)."""
        if not self._slots.acquire(timeout=wait_s):
            raise DependencyUnavailable("no database connection became free in time", code="database_busy")
        try:
            con = Connection(_translate_connect(self._connect))
            try:
                yield con
            except (DatabaseError, InterfaceError, OSError) as error:
                raise translate(error) from error
            finally:
                con.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _translate_connect(connect: Callable[[], CoreConnection]) -> CoreConnection:
    try:
        return connect()
    except (TimeoutError, InterfaceError, OSError) as error:
        raise DependencyUnavailable("the ledger database is unreachable", details={"service": "postgres"}) from error
    except DatabaseError as error:
        raise translate(error) from error


def error_fields(error: BaseException) -> dict[str, str]:
    """A server error's fields (C: SQLSTATE, M: message, D: detail, n: constraint), or {}."""
    if isinstance(error, DatabaseError) and error.args and isinstance(error.args[0], dict):
        return error.args[0]
    return {}


def translate(error: Exception) -> Exception:
    """Turn a driver error into the ledger's error hierarchy (or leave it be)."""
    if isinstance(error, (InterfaceError, OSError, socket.timeout)):
        return DependencyUnavailable("the ledger database is unreachable", details={"service": "postgres"})
    fields = error_fields(error)
    if not fields:
        return error
    sqlstate, message = fields.get("C", ""), fields.get("M", "")
    # Refusals are P0001; the double-entry guards raise check_violation (23514) and the
    # references they hold foreign_key_violation (23503), whose message is otherwise a
    # constraint's text, never a code of the list.
    if sqlstate in ("P0001", "23514", "23503") and message in DATABASE_REFUSALS:
        try:
            details = json.loads(fields.get("D") or "null")
        except ValueError:
            details = fields.get("D")
        return DATABASE_REFUSALS[message](message.replace("_", " "), code=message, details=details)
    if sqlstate == "23505" and fields.get("n") == "transactions_void_once":
        return Refused("the transaction is already voided", code="already_voided")
    # text Postgres can't hold (a NUL, a byte sequence not UTF-8): the command models
    # refuse it first; anything that slips past them is still the caller's input, a 400
    if sqlstate in ("22021", "22P05"):
        return InvalidRequest(
            "the request holds text the ledger can't store (a NUL character, say)",
            code="validation_failed",
            details=[{"field": None, "message": "text the database refused", "type": "invalid_text"}],
        )
    if sqlstate == "22003":
        return InvalidRequest(
            "the amount would take a balance or total beyond a signed 64-bit integer", code="amount_out_of_range"
        )
    # still failing after every retry, or cancelled by the statement timeout (a deploy
    # re-creating the database's code holds the tables for a moment): rolled back
    if sqlstate in RETRYABLE_SQLSTATES or sqlstate == QUERY_CANCELED:
        return DependencyUnavailable(
            "the ledger database is too contended; retry", code="database_busy", details={"service": "postgres"}
        )
    if sqlstate.startswith(UNAVAILABLE_SQLSTATE_PREFIXES):
        return DependencyUnavailable("the ledger database is unavailable", details={"service": "postgres"})
    return error


def retry_alone(sqlstate: str | None, constraint: str | None) -> bool:
    """A posting that failed this way is posted again: it was rolled back, and the same
    call can succeed (a deadlock, a serialization failure) or answer with the copy that
    beat it (a business id's unique index)."""
    return sqlstate in RETRYABLE_SQLSTATES or (sqlstate == "23505" and constraint in BUSINESS_ID_INDEXES)


def _retryable(error: BaseException) -> bool:
    fields = error_fields(error)
    sqlstate = fields.get("C")
    if sqlstate:
        return retry_alone(sqlstate, fields.get("n"))
    # A pooled connection that died (database restart, idle timeout): retry once on a new
    # one. Safe for postings because a repeated ledger.commit_posting() with the same idempotency
    # key replays instead of posting twice.
    return isinstance(error, (InterfaceError, ConnectionError, BrokenPipeError))


@lru_cache(maxsize=8)
def _retrying(attempts: int) -> Retrying:
    # Built once per bound and shared: tenacity keeps per-call state thread-locally.
    return Retrying(
        retry=retry_if_exception(_retryable),
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.005, max=0.2),
        reraise=True,
    )


def _lost(error: BaseException) -> bool:
    """The connection ended under a statement: whether the server ran it is unknown."""
    sqlstate = error_fields(error).get("C")
    if sqlstate:
        return sqlstate.startswith(LOST_SQLSTATE_PREFIXES)
    return isinstance(error, (InterfaceError, OSError))


def run_with_retry(
    pool: Pool, work: Callable[[Connection], T], attempts: int = 5, span: str = "postgres", posting: bool = False
) -> T:
    """Run `work` on a pooled connection, retrying serialization, deadlock and dropped
    connection failures with jittered exponential backoff, at most `attempts` times.
    The time counts to the request's `span` (empty: the caller times it).

    `posting`: `work` posts money. If an attempt's connection was lost after its
    statement was sent, the server may have committed it (an autocommit statement
    commits after its rows are sent), so when no later attempt gives an answer the
    failure is OutcomeUnknown, not a 503 that says nothing was posted."""
    sent_then_lost = False

    def attempt() -> T:
        nonlocal sent_then_lost
        with pool.connection() as con:
            try:
                return work(con)
            except Exception as error:
                sent_then_lost = sent_then_lost or (getattr(con, "sent", True) and _lost(error))
                raise

    try:
        with timing.span(span) if span else nullcontext():
            try:
                return attempt()  # the common case, without the retry machinery's per-call cost
            except Exception as error:
                if attempts <= 1 or not _retryable(error):
                    raise
            return _retrying(attempts - 1)(attempt)
    except LedgerError as error:
        if posting and sent_then_lost and isinstance(error, DependencyUnavailable):
            raise _outcome_unknown() from error  # a later attempt found no connection
        raise
    except Exception as error:
        translated = translate(error)
        if posting and sent_then_lost and isinstance(translated, DependencyUnavailable):
            raise _outcome_unknown() from error
        if translated is error:
            raise
        raise translated from error


def _outcome_unknown() -> OutcomeUnknown:
    return OutcomeUnknown(
        "the connection to the ledger database was lost after the posting was sent: it may or may not have "
        "posted; retry with the same Idempotency-Key (it answers with the posting if there is one), or look the "
        "transaction up by that key",
        details={"service": "postgres"},
    )


class Statements:
    """What every Postgres adapter shares: its statements run on pooled connections,
    prepared once per connection, with run_with_retry's retries."""

    def __init__(self, pool: Pool, attempts: int = 5) -> None:
        self._pool = pool
        self._attempts = attempts

    def _run(self, sql: str, **params: Any) -> list[list[Any]]:
        return run_with_retry(self._pool, lambda con: con.run(sql, **params), self._attempts)
