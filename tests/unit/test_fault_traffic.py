"""The faults run's traffic and accounting (bench/fault_traffic.py, bench/fault_accounting.py):
which answers are final, that a request is retried under its own key until one comes,
and that the accounting finds each kind of loss it names."""

from __future__ import annotations

import threading
import time
from collections import Counter

from bench.fault_accounting import LedgerView, Window, account
from bench.fault_traffic import POSTED, REFUSED, REJECTED, Attempt, Request, RetryingTraffic, backoff_s, classify


def test_only_an_answer_no_retry_can_change_is_final():
    assert classify(Attempt(201, "", 7)) == POSTED
    assert classify(Attempt(422, "refused")) == REFUSED
    assert classify(Attempt(409, "already_posted")) == REFUSED
    assert classify(Attempt(400, "invalid_request")) == REJECTED
    for retried in (
        Attempt(0, "ConnectionRefusedError"),
        Attempt(503, "dependency_unavailable"),
        Attempt(503, "outcome_unknown"),
        Attempt(500, ""),
        Attempt(429, "rate_limited"),
        Attempt(409, "request_in_progress"),
    ):
        assert classify(retried) is None, retried


def test_backoff_doubles_up_to_its_cap():
    assert [backoff_s(n) for n in range(6)] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]


def test_every_request_is_retried_under_its_own_key_until_final():
    sent: list[tuple[str, dict]] = []
    lock = threading.Lock()

    def make(index: int, intended: float) -> Request:
        return Request(index, "usage", f"k{index}", {"n": index}, "phase")

    def send(request: Request, number: int) -> Attempt:
        with lock:
            sent.append((request.key, request.body))
        # every request fails twice (a dependency down), then posts; odd ones are refused
        if number < 2:
            return Attempt(503, "dependency_unavailable")
        return Attempt(201, "", request.index) if request.index % 2 == 0 else Attempt(422, "refused")

    traffic = RetryingTraffic(200.0, make, send, time.monotonic, workers=4)
    traffic.start()
    time.sleep(0.1)
    traffic.stop_sending()
    assert traffic.drain(time.monotonic() + 10, time.sleep) == []
    requests = traffic.requests
    assert len(requests) >= 5
    assert all(r.retries == 2 and len(r.attempts) == 3 for r in requests)
    assert Counter(key for key, _ in sent) == {r.key: 3 for r in requests}
    assert all(body == {"n": int(key[1:])} for key, body in sent)  # the same body every time
    assert {r.final for r in requests if r.index % 2 == 0} == {POSTED}
    assert {r.transaction_id for r in requests if r.index % 2 == 0} == {r.index for r in requests if r.index % 2 == 0}
    assert {r.final for r in requests if r.index % 2} == {REFUSED}


def test_drain_gives_up_at_its_deadline_and_names_the_unresolved():
    traffic = RetryingTraffic(
        100.0,
        lambda i, t: Request(i, "usage", f"k{i}", {}, "p"),
        lambda r, n: Attempt(0, "ConnectionRefusedError"),
        time.monotonic,
        workers=2,
    )
    traffic.start()
    time.sleep(0.05)
    traffic.stop_sending()
    left = traffic.drain(time.monotonic() + 0.3, time.sleep)
    assert left and all(r.final is None for r in left)


def _request(
    index: int,
    phase: str,
    final: str | None,
    transaction_id: int | None,
    sent: float = 1.0,
    answered: float = 2.0,
    failures: int = 0,
) -> Request:
    request = Request(index, "usage", f"k{index}", {}, phase, first_sent=sent)
    for n in range(failures):
        request.attempts.append((sent + n, sent + n + 0.5, Attempt(503, "dependency_unavailable")))
    if final is not None:
        status = {POSTED: 201, REFUSED: 422, REJECTED: 400}[final]
        request.attempts.append((answered - 0.1, answered, Attempt(status, "", transaction_id)))
        request.final, request.answered_at, request.transaction_id = final, answered, transaction_id
    return request


WINDOWS = [Window("a", 0.0, 10.0, 13.0), Window("b", 20.0, 30.0, 33.0)]


def test_a_clean_run_accounts_for_everything():
    requests = [
        _request(1, "a", POSTED, 101, answered=5.0),
        _request(2, "a", REFUSED, None),
        _request(3, "b", POSTED, 102, sent=29.0, answered=31.5, failures=2),
    ]
    view = LedgerView({"k1": [101], "k3": [102]}, [], [101, 102], [101, 102], {})
    rows, total, phantom = account(requests, WINDOWS, view, Counter({101: 1, 102: 2}), {101: 1, 102: 1})
    assert all(row.clean for row in rows) and total.clean and not phantom
    a, b = rows
    assert (a.acked_before, a.acked_before_present) == (1, 1)
    assert b.in_flight == 1 and b.retries == 2 and b.failed_attempts == {"503": 2}
    assert b.recovery_s == 0.0  # its last failed attempt was sent the moment the fault came


def test_the_accounting_finds_each_kind_of_loss():
    requests = [
        _request(1, "a", POSTED, 101, answered=5.0),  # acknowledged, then gone: lost
        _request(2, "a", POSTED, 102),  # posted twice under its key
        _request(3, "a", REFUSED, None),  # refused, yet posted
        _request(4, "b", None, None, sent=25.0),  # never answered
    ]
    view = LedgerView({"k2": [102, 103], "k3": [104]}, [105], [102, 103, 104, 105], [102, 103, 104, 105], {})
    rows, total, phantom = account(requests, WINDOWS, view, Counter({102: 1, 103: 1}), {102: 2, 103: 1})
    a, b = rows
    assert a.lost == 1 and (a.acked_before, a.acked_before_present) == (2, 1)
    assert a.duplicated == 2
    assert b.unresolved == 1 and not b.clean
    assert a.events_missing == 2 == total.events_missing  # 104 (a's) and 105 (no request's: the first phase's)
    assert total.erp_doubled == 1 and total.erp_missing == 2
    assert phantom == [105]
    assert not total.clean


def test_only_an_event_the_killed_emulator_had_just_taken_counts_as_lost_with_it():
    requests = [_request(n, "a", POSTED, 100 + n) for n in (1, 2, 3)]
    killed = 10.0
    published = {101: 9.5, 102: 10.5, 103: 3.0}  # just before the kill; after it; long before
    view = LedgerView({f"k{n}": [100 + n] for n in (1, 2, 3)}, [], [101, 102, 103], [], published)
    rows, total, _ = account(requests, WINDOWS, view, Counter(), {}, [killed])
    assert total.events_lost_in_emulator == 1  # 101
    assert total.events_missing == 2  # 102 could not have been taken by it; 103 would have been delivered
    assert not total.clean
