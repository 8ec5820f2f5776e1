"""Traffic for `make faults`: requests at a fixed rate, each retried under its own
Idempotency-Key until it has a final answer. No I/O here: the sender and the clock are
injected, so the unit tests drive it with fakes.

A request is one balance action with a key and a body fixed when it is made. An attempt
that fails for a reason a retry can change (a connection refused or reset, a timeout, a
5xx, 429, 409 request_in_progress or wallet_locked) is sent again, with the same key and
body, after an exponential backoff with jitter, and never sooner than the answer's
Retry-After; a 2xx (posted) or a business refusal (422, or 409 when the business id
posted under another key) is final, as is any other 4xx (a bug in the traffic, counted
apart). This is what docs/durability.md asks of every client.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from common.errors import DATABASE_REFUSALS, AlreadyPosted

POSTED, REFUSED, REJECTED = "posted", "refused", "rejected"  # final answers
# 409s that are final: the business id posted already, under another key
ALREADY_POSTED = frozenset(code for code, kind in DATABASE_REFUSALS.items() if kind is AlreadyPosted)


@dataclass(frozen=True)
class Attempt:
    """What one attempt came back with: an HTTP status and error code, or an exception."""

    status: int = 0  # 0: no HTTP answer (connection error, timeout)
    code: str = ""  # the error body's code, or the exception's name
    transaction_id: int | None = None
    retry_after_s: float = 0.0  # the answer's Retry-After


def classify(attempt: Attempt) -> str | None:
    """The final answer an attempt gives its request, or None when it must be retried."""
    if 200 <= attempt.status < 300:
        return POSTED
    if attempt.status == 422 or (attempt.status == 409 and attempt.code in ALREADY_POSTED):
        return REFUSED
    if attempt.status in (0, 409, 429) or attempt.status >= 500:  # 409: request_in_progress, wallet_locked
        return None
    return REJECTED


@dataclass
class Request:
    index: int
    action: str
    key: str
    body: dict
    phase: str  # the fault whose window it was first sent in
    expect_refused: bool = False  # the ledger must refuse it (more than the wallet holds)
    first_sent: float = 0.0
    attempts: list[tuple[float, float, Attempt]] = field(default_factory=list)  # (sent, answered, what)
    final: str | None = None
    transaction_id: int | None = None
    answered_at: float | None = None

    @property
    def retries(self) -> int:
        return max(0, len(self.attempts) - 1)


def backoff_s(retry: int, base_s: float = 0.2, cap_s: float = 2.0) -> float:
    """Exponential, capped: a client that retries does not add to an outage's load."""
    return min(cap_s, base_s * 2**retry)


def retry_in_s(retry: int, attempt: Attempt, jitter: Callable[[], float] = random.random) -> float:
    """The backoff with jitter (half to all of it, so clients that failed together do
    not come back together), and never sooner than the answer's Retry-After."""
    return max(attempt.retry_after_s, backoff_s(retry) * (0.5 + jitter() / 2))


class RetryingTraffic:
    """Send `make_request(i)` at `rate` per second and retry each until it is final.

    `send(request, attempt_number)` sends one attempt and returns an Attempt; it is
    called from `workers` threads. Requests are made only while `sending` is true;
    `drain(deadline)` waits for every request made to be final.
    """

    def __init__(
        self,
        rate: float,
        make_request: Callable[[int, float], Request],
        send: Callable[[Request, int], Attempt],
        clock: Callable[[], float],
        workers: int = 32,
    ) -> None:
        self.rate = rate
        self._make = make_request
        self._send = send
        self._clock = clock
        self._workers = workers
        self.requests: list[Request] = []
        self._due: list[tuple[float, int, Request]] = []  # (when, tie-break, request)
        self._ties = itertools.count()
        self._condition = threading.Condition()
        self._sending = False
        self._stopped = False
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._sending = True
        self._threads = [threading.Thread(target=self._schedule, daemon=True)] + [
            threading.Thread(target=self._work, daemon=True) for _ in range(self._workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, request: Request) -> None:
        """One more request, sent now, beside the schedule's."""
        with self._condition:
            self.requests.append(request)
            heapq.heappush(self._due, (self._clock(), next(self._ties), request))
            self._condition.notify()

    def stop_sending(self) -> None:
        with self._condition:
            self._sending = False
            self._condition.notify_all()

    def unresolved(self) -> list[Request]:
        with self._condition:
            return [r for r in self.requests if r.final is None]

    def drain(self, deadline: float, sleep: Callable[[float], None]) -> list[Request]:
        """Wait until every request is final or the clock passes `deadline`; then stop
        the workers. Returns those still without a final answer."""
        while self.unresolved() and self._clock() < deadline:
            sleep(0.1)
        self.stop()
        return self.unresolved()

    def stop(self) -> None:
        """No more requests, and the workers end after the attempt each is sending."""
        with self._condition:
            self._sending = False
            self._stopped = True
            self._condition.notify_all()

    def _schedule(self) -> None:
        """Make request i at start + i / rate (open loop: a slow server does not slow it)."""
        start = self._clock()
        for index in itertools.count():
            intended = start + index / self.rate
            with self._condition:
                while self._sending and self._clock() < intended:
                    self._condition.wait(timeout=max(0.0, min(0.05, intended - self._clock())))
                if not self._sending:
                    return
                request = self._make(index, intended)
                self.requests.append(request)
                heapq.heappush(self._due, (intended, next(self._ties), request))
                self._condition.notify()

    def _next_due(self) -> Request | None:
        with self._condition:
            while not self._stopped:
                if self._due and self._due[0][0] <= self._clock():
                    return heapq.heappop(self._due)[2]
                wait = self._due[0][0] - self._clock() if self._due else 0.05
                self._condition.wait(timeout=max(0.001, min(0.05, wait)))
            return None

    def _work(self) -> None:
        while (request := self._next_due()) is not None:
            number = len(request.attempts)
            sent = self._clock()
            if number == 0:
                request.first_sent = sent
            try:
                attempt = self._send(request, number)
            except Exception as error:  # noqa: BLE001 - a sender's bug must not drop the request
                attempt = Attempt(0, f"sender {type(error).__name__}")
            answered = self._clock()
            final = classify(attempt)
            with self._condition:
                request.attempts.append((sent, answered, attempt))
                if final is None:
                    heapq.heappush(self._due, (answered + retry_in_s(number, attempt), next(self._ties), request))
                    self._condition.notify()
                else:
                    request.final, request.answered_at = final, answered
                    request.transaction_id = attempt.transaction_id
