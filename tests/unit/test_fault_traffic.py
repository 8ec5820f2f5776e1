"""The faults run's traffic and accounting (bench/fault_traffic.py, bench/fault_accounting.py):
which answers are final, that a request is retried under its own key until one comes,
and that the accounting finds each kind of loss it names."""

from __future__ import annotations

import threading
import time
from collections import Counter

from bench.fault_accounting import LedgerView, Window, account, expected_balances, window_of
from bench.fault_traffic import (
    POSTED,
    REFUSED,
    REJECTED,
    Attempt,
    Request,
    RetryingTraffic,
    backoff_s,
    classify,
    retry_in_s,
)


def test_only_an_answer_no_retry_can_change_is_final():
    assert classify(Attempt(201, "", 7)) == POSTED
    assert classify(Attempt(422, "refused")) == REFUSED
    assert classify(Attempt(409, "usage_id_already_posted")) == REFUSED
    assert classify(Attempt(409, "external_ref_already_posted")) == REFUSED
    assert classify(Attempt(403, "forbidden")) == REJECTED
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


def test_backoff_doubles_up_to_its_cap_with_jitter_and_waits_at_least_as_told():
    assert [backoff_s(n) for n in range(6)] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    failed = Attempt(503, "dependency_unavailable")
    assert retry_in_s(2, failed, jitter=lambda: 0.0) == 0.4 and retry_in_s(2, failed, jitter=lambda: 1.0) == 0.8
    assert retry_in_s(0, Attempt(503, "dependency_unavailable", retry_after_s=1.0), jitter=lambda: 1.0) == 1.0


def test_a_sender_that_raises_has_its_request_retried_not_dropped():
    calls = []

    def send(request: Request, number: int) -> Attempt:
        calls.append(number)
        if number == 0:
            raise KeyError("transaction")
        return Attempt(201, "", 1)

    traffic = RetryingTraffic(50.0, lambda i, t: Request(i, "usage", f"k{i}", {}, "p"), send, time.monotonic, 1)
    traffic.start()
    time.sleep(0.01)
    traffic.stop_sending()
    assert traffic.drain(time.monotonic() + 5, time.sleep) == []
    assert traffic.requests[0].final == POSTED and traffic.requests[0].attempts[0][2].code == "sender KeyError"


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
    action: str = "usage",
    body: dict | None = None,
    expect_refused: bool = False,
) -> Request:
    body = body if body is not None else {"wallet_id": 1, "amount": 1}
    request = Request(index, action, f"k{index}", body, phase, expect_refused=expect_refused, first_sent=sent)
    for n in range(failures):
        request.attempts.append((sent + n, sent + n + 0.5, Attempt(503, "dependency_unavailable")))
    if final is not None:
        status = {POSTED: 201, REFUSED: 422, REJECTED: 400}[final]
        request.attempts.append((answered - 0.1, answered, Attempt(status, "", transaction_id)))
        request.final, request.answered_at, request.transaction_id = final, answered, transaction_id
    return request


WINDOWS = [Window("a", 0.0, 10.0, 13.0), Window("b", 20.0, 30.0, 33.0)]
OPENING = {1: 100, 2: 100}


def test_a_clean_run_accounts_for_everything():
    requests = [
        _request(1, "a", POSTED, 101, answered=5.0),
        _request(2, "a", REFUSED, None, expect_refused=True),
        _request(3, "b", POSTED, 102, sent=29.0, answered=34.5, failures=5),
    ]
    view = LedgerView({"k1": [101], "k3": [102]}, [], [101, 102], {1: 98, 2: 100})
    result = account(requests, WINDOWS, view, OPENING, Counter({101: 1, 102: 2}), {101: 1, 102: 1})
    assert result.clean, result
    a, b = result.rows
    assert (a.acked_before, a.acked_before_present) == (1, 1)
    assert b.in_flight == 1 and b.in_flight_settled_s == 4.5 and b.retries == 5
    assert b.failed_attempts == {"503": 4} and a.failed_attempts == {"503": 1}  # that one failed at 29.5
    late = _request(4, "a", POSTED, 103, sent=29.8, answered=31.0)
    late.attempts.insert(0, (29.8, 30.2, Attempt(0, "ConnectionResetError")))  # in flight when b struck
    view = LedgerView({"k1": [101], "k3": [102], "k4": [103]}, [], [101, 102, 103], {1: 97, 2: 100})
    counts = account([*requests, late], WINDOWS, view, OPENING, Counter({101: 1, 102: 1, 103: 1}), {}).rows[1]
    assert counts.failed_attempts == {"503": 4, "ConnectionResetError": 1}
    assert b.recovery_s == 3.0 and b.recovery_after_restore_s == 0.0  # its last failure was sent at 33


def test_the_accounting_finds_each_kind_of_loss():
    requests = [
        _request(1, "a", POSTED, 101, answered=5.0),  # acknowledged, then gone: lost
        _request(2, "a", POSTED, 102),  # posted twice under its key
        _request(3, "a", REFUSED, None),  # refused, yet posted; and it had to be posted
        _request(4, "b", None, None, sent=25.0),  # never answered
        _request(5, "b", POSTED, 106, sent=25.0, expect_refused=True),  # an overdraft, posted
        _request(6, "b", REJECTED, None, sent=25.0),  # a 4xx the traffic never meant to cause
    ]
    view = LedgerView({"k2": [102, 103], "k3": [104], "k5": [106]}, [105], [102, 103, 104, 105, 106], {1: 100, 2: 100})
    result = account(requests, WINDOWS, view, OPENING, Counter({102: 1, 103: 1, 106: 1}), {102: 2, 103: 1, 106: 1})
    a, b = result.rows
    assert a.lost == 1 and (a.acked_before, a.acked_before_present) == (2, 1)
    assert a.duplicated == 2 and a.wrong_answers == 1
    assert b.unresolved == 1 and b.wrong_answers == 2
    assert result.total.events_missing == 2  # 104 (a's) and 105 (no request's: the first phase's)
    assert result.total.erp_doubled == 1 and result.total.erp_missing == 2
    assert result.phantom == [105]
    assert result.balances_off == {1: (97, 100)}  # three posted usages of 1 from wallet 1
    assert not result.clean


def test_a_second_posting_under_another_key_shows_in_the_balances():
    requests = [_request(1, "a", POSTED, 101)]
    view = LedgerView({"k1": [101]}, [], [101], {1: 98, 2: 100})  # its money moved twice
    result = account(requests, WINDOWS, view, OPENING, Counter({101: 1}), {101: 1})
    assert result.total.clean and not result.phantom
    assert result.balances_off == {1: (99, 98)} and not result.clean


def test_expected_balances_follow_each_action():
    requests = [
        _request(1, "a", POSTED, 11, action="topup", body={"wallet_id": 1, "amount": 10}),
        _request(2, "a", POSTED, 12, action="message", body={"wallet_id": 2, "amount": 3}),
        _request(3, "a", POSTED, 13, action="transfer", body={"from_wallet_id": 1, "to_wallet_id": 2, "amount": 4}),
        _request(4, "a", POSTED, 14, action="void", body={"transaction_id": 12}),
        _request(5, "a", REFUSED, None, action="usage", body={"wallet_id": 1, "amount": 50}),
    ]
    assert expected_balances(requests, OPENING) == {1: 106, 2: 104}


def test_the_fault_in_effect_is_the_last_that_struck():
    assert window_of(WINDOWS, 5.0).name == "a"  # before any fault: the first
    assert window_of(WINDOWS, 25.0).name == "a"  # b's window opened, but b had not struck
    assert window_of(WINDOWS, 30.0).name == "b"


def test_a_submitted_request_is_sent_at_once_and_retried_like_the_rest():
    sent = []

    def send(request: Request, number: int) -> Attempt:
        sent.append((request.key, number))
        return Attempt(503, "dependency_unavailable") if number == 0 else Attempt(201, "", 9)

    traffic = RetryingTraffic(0.001, lambda i, t: Request(i, "usage", f"k{i}", {}, "p"), send, time.monotonic, 2)
    traffic.start()
    held = Request(-1, "usage", "held", {}, "p")
    traffic.submit(held)
    traffic.stop_sending()
    assert traffic.drain(time.monotonic() + 5, time.sleep) == []
    assert held.final == POSTED and ("held", 0) in sent and ("held", 1) in sent
