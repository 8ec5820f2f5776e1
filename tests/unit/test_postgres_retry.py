"""Serialization and deadlock failures are retried in one place, with a bound."""

from contextlib import contextmanager

import pytest
from pg8000.exceptions import DatabaseError, InterfaceError

from common.adapters.postgres import run_with_retry, translate
from common.errors import DependencyUnavailable, OutcomeUnknown, Refused


class FakePool:
    @contextmanager
    def connection(self):
        yield object()


def failing(sqlstate, times):
    calls = []

    def work(con):
        calls.append(1)
        if len(calls) <= times:
            raise DatabaseError({"C": sqlstate, "M": "boom"})
        return "posted"

    return work, calls


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
def test_transient_failures_are_retried_until_they_pass(sqlstate):
    work, calls = failing(sqlstate, times=3)
    assert run_with_retry(FakePool(), work, attempts=5) == "posted"
    assert len(calls) == 4


def test_retries_are_bounded_and_end_in_a_503():
    work, calls = failing("40P01", times=100)
    with pytest.raises(DependencyUnavailable) as busy:
        run_with_retry(FakePool(), work, attempts=3)
    assert len(calls) == 3 and busy.value.code == "database_busy"


def test_refusals_are_not_retried():
    calls = []

    def work(con):
        calls.append(1)
        raise DatabaseError({"C": "P0001", "M": "insufficient_funds", "D": '{"wallet_id": 1}'})

    with pytest.raises(Refused) as refused:
        run_with_retry(FakePool(), work)
    assert len(calls) == 1 and refused.value.details == {"wallet_id": 1}


def test_overflow_is_a_400():
    assert translate(DatabaseError({"C": "22003", "M": "bigint out of range"})).status == 400


def test_a_single_attempt_is_not_retried():
    work, calls = failing("40001", times=1)
    with pytest.raises(DependencyUnavailable):
        run_with_retry(FakePool(), work, attempts=1)
    assert len(calls) == 1


def test_running_balances_come_back_with_system_legs_empty():
    from common.adapters.ledger_store import _parse_balances

    assert _parse_balances("120,,-5") == [120, None, -5]


def test_a_statement_cancelled_by_its_timeout_is_a_busy_database():
    from pg8000.exceptions import DatabaseError

    from common.adapters.postgres import translate
    from common.errors import DependencyUnavailable

    error = translate(DatabaseError({"C": "57014", "M": "canceling statement due to statement timeout"}))
    assert isinstance(error, DependencyUnavailable) and error.code == "database_busy" and error.status == 503


@pytest.mark.parametrize(
    ("sqlstate", "message"),
    [("22021", 'invalid byte sequence for encoding "UTF8": 0x00'), ("22P05", "unsupported Unicode escape sequence")],
)
def test_text_postgres_cannot_hold_is_a_400_not_a_500(sqlstate, message):
    error = translate(DatabaseError({"C": sqlstate, "M": message}))
    assert (error.status, error.code) == (400, "validation_failed")


class SentConnection:
    """A connection that says whether its statement went out, as common.adapters.postgres.Connection does."""

    def __init__(self, sent: bool) -> None:
        self.sent = sent


class ScriptedPool:
    """Each connection() gives the next scripted step: a connection, or the error of not getting one."""

    def __init__(self, steps) -> None:
        self.steps = list(steps)

    @contextmanager
    def connection(self):
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        yield step


def lost(con):
    raise InterfaceError("network error")


@pytest.mark.parametrize(
    "error", [InterfaceError("network error"), DatabaseError({"C": "57P01", "M": "terminating connection"})]
)
def test_a_posting_whose_connection_was_lost_after_it_was_sent_has_an_unknown_outcome(error):
    def work(con):
        raise error

    unreachable = DependencyUnavailable("the ledger database is unreachable")
    pool = ScriptedPool([SentConnection(True), unreachable, unreachable])
    with pytest.raises(OutcomeUnknown) as unknown:
        run_with_retry(pool, work, attempts=3, posting=True)
    assert unknown.value.status == 503 and unknown.value.code == "outcome_unknown"
    assert "same Idempotency-Key" in unknown.value.message and "nothing was posted" not in unknown.value.message


def test_nothing_was_posted_when_nothing_was_sent():
    never_sent = ScriptedPool([SentConnection(False), DependencyUnavailable("the ledger database is unreachable")])
    with pytest.raises(DependencyUnavailable) as unavailable:
        run_with_retry(never_sent, lost, attempts=2, posting=True)
    assert unavailable.value.code == "dependency_unavailable"
    busy = ScriptedPool([DependencyUnavailable("no connection", code="database_busy")])
    with pytest.raises(DependencyUnavailable) as no_connection:
        run_with_retry(busy, lost, attempts=2, posting=True)
    assert no_connection.value.code == "database_busy"


def test_a_read_whose_connection_was_lost_is_just_unavailable():
    pool = ScriptedPool([SentConnection(True), DependencyUnavailable("the ledger database is unreachable")])
    with pytest.raises(DependencyUnavailable) as unavailable:
        run_with_retry(pool, lost, attempts=2)
    assert not isinstance(unavailable.value, OutcomeUnknown)


def test_a_later_attempts_answer_settles_what_a_lost_one_left_unknown():
    """The retry posts under the same key: what it answers is what happened."""
    answers = iter([InterfaceError("network error"), "replayed"])

    def work(con):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert run_with_retry(ScriptedPool([SentConnection(True)] * 2), work, attempts=2, posting=True) == "replayed"
