"""The open-loop load generator's accounting (bench/arrivals.py), driven by a fake clock
and a fake sender: what it charges a request and that it counts each one once. Nothing
here depends on the machine's speed."""

import threading

import pytest

from bench import arrivals
from bench.arrivals import Step


class FakeClock:
    """Time moves only when someone sleeps or a fake request takes time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def test_a_stalled_sender_charges_the_queued_requests_their_wait():
    """Ten requests at 10/s, one worker; the third takes 1 s. The ones due meanwhile
    wait for the worker, and each is charged from its own intended send time."""
    clock, calls = FakeClock(), []

    def send(worker: int) -> str:
        calls.append(clock())
        clock.advance(1.0 if len(calls) == 3 else 0.010)
        return "ok"

    step = arrivals.run_step(10, arrivals.uniform(10, 1.0), 0.0, send, 1, clock, clock.advance, 60)

    assert step.answered == step.scheduled == 10
    # request 2 took 1 s; requests 3..8, due at 0.3..0.8 s, were sent at 1.21..1.26 s
    expected_ms = [10, 10, 1000, 910, 820, 730, 640, 550, 460, 370]
    assert step.histogram.get_total_count() == 10
    for percentile, expected in ((50, 550), (90, 910), (100, 1000)):
        assert step.ms(percentile) == pytest.approx(expected, rel=0.002)
    # a closed loop would have recorded 10 ms for every one of them but the stalled one
    assert sum(1 for v in expected_ms if v > 100) == 8


def test_a_sender_that_keeps_up_is_charged_only_its_service_time():
    clock = FakeClock()

    def send(worker: int) -> str:
        clock.advance(0.004)
        return "ok"

    step = arrivals.run_step(50, arrivals.uniform(50, 2.0), 0.0, send, 1, clock, clock.advance, 60)

    assert step.answered == 100
    assert step.ms(100) == pytest.approx(4, rel=0.002)
    assert step.achieved == pytest.approx(100 / (99 / 50 + 0.004), rel=0.001)


def test_warm_up_requests_are_sent_but_not_recorded():
    clock, sent = FakeClock(), []

    def send(worker: int) -> str:
        sent.append(worker)
        return "ok"

    step = arrivals.run_step(20, arrivals.uniform(20, 3.0), 1.0, send, 1, clock, clock.advance, 60)

    assert len(sent) == 60
    assert step.scheduled == step.counted == step.histogram.get_total_count() == 40


@pytest.mark.parametrize("schedule", ["uniform", "poisson"])
def test_every_scheduled_request_is_counted_exactly_once(schedule):
    """Eight workers; answers, refusals, error statuses, exceptions, client timeouts and
    requests whose time ran out in the queue: each request lands in one place."""
    clock, lock, calls = FakeClock(), threading.Lock(), [0]
    offsets = arrivals.uniform(200, 5.0) if schedule == "uniform" else arrivals.poisson(200, 5.0, seed=3)

    def send(worker: int) -> str:
        with lock:
            calls[0] += 1
            n = calls[0]
        if n % 97 == 0:
            clock.advance(3.0)  # a stall longer than the timeout: the queue behind it is dropped
            return "timeout"
        if n % 13 == 0:
            raise ConnectionResetError("peer went away")
        clock.advance(0.001)
        return ["ok", "ok", "refused", "HTTP 503"][n % 4]

    step = arrivals.run_step(200, offsets, 1.0, send, 8, clock, clock.advance, 2.0)

    assert step.scheduled == sum(1 for offset in offsets if offset >= 1.0) > 0
    assert step.counted == step.scheduled
    assert step.histogram.get_total_count() == step.answered == step.outcomes["ok"] + step.outcomes["refused"]
    assert step.answered + sum(step.errors.values()) == step.scheduled
    assert {"HTTP 503", "ConnectionResetError", "timeout", arrivals.NOT_SENT} <= set(step.errors)


def test_each_request_is_also_recorded_by_kind_by_minute_of_its_time_and_by_second_of_its_answer():
    """The soak's views of one run: 2 requests/s for 150 s after 10 s of warm-up, one
    worker. A sender that names its kind gets a histogram per kind; latency is filed
    under the minute the request was due (measured from the end of the warm-up), and
    answers under the second they came, so a slow minute shows as itself."""
    clock, calls = FakeClock(), [0]
    kinds = ["topup", "usage", "usage", "void"]

    def send(worker: int) -> tuple[str, str]:
        calls[0] += 1
        due_s = (calls[0] - 1) / 2 - 10  # seconds after the warm-up this request was due
        clock.advance(0.200 if 60 <= due_s < 120 else 0.005)  # the second minute is slow
        kind = kinds[calls[0] % 4]
        return ("HTTP 503" if kind == "void" and calls[0] % 8 == 3 else "ok"), kind

    step = arrivals.run_step(2, arrivals.uniform(2, 160.0), 10.0, send, 1, clock, clock.advance, 60)

    assert step.scheduled == step.counted == 300
    assert sorted(step.per_minute) == [0, 1, 2]
    assert [step.per_minute[m].get_total_count() for m in (0, 1, 2)] == [
        120 - 15,
        120 - 15,
        60 - 7,
    ]  # failures are not timed
    assert arrivals.ms(step.per_minute[0], 99) == pytest.approx(5, rel=0.002)
    assert arrivals.ms(step.per_minute[1], 99) == pytest.approx(200, rel=0.002)
    assert arrivals.ms(step.per_minute[2], 100) == pytest.approx(5, rel=0.002)
    assert sum(step.per_second.values()) == step.answered == step.histogram.get_total_count()
    assert step.per_second[0] == 2 and max(step.per_second) == 149
    assert {kind: h.get_total_count() for kind, h in step.by_kind.items()} == {
        "topup": 75,
        "usage": 150,
        "void": 75 - 37,
    }
    assert step.kind_outcomes[("void", "HTTP 503")] == step.errors["HTTP 503"] == 37
    assert sum(step.kind_outcomes.values()) == step.counted
    cells = arrivals.ms_cells(step.by_kind["topup"])  # p50, p95, p99, p99.9, max
    assert float(cells[0]) == pytest.approx(5, rel=0.002) and float(cells[-1]) == pytest.approx(200, rel=0.002)
    assert arrivals.ms_cells(arrivals.histogram()) == ["–"] * 5


def test_a_poisson_schedule_is_seeded_and_keeps_its_rate():
    first, again = arrivals.poisson(100, 60, seed=7), arrivals.poisson(100, 60, seed=7)
    assert first == again != arrivals.poisson(100, 60, seed=8)
    assert 5400 < len(first) < 6600 and all(a < b for a, b in zip(first, first[1:], strict=False))
    assert arrivals.uniform(70, 2.0) == [i / 70 for i in range(140)]


def _step(rate: float, latency_ms: float, failed: int = 0) -> Step:
    step = Step(rate)
    for _ in range(100):
        step.histogram.record_value(int(latency_ms * 1000))
    step.outcomes["ok"] = 100
    if failed:
        step.outcomes["HTTP 503"] = failed
    return step


def test_the_step_up_doubles_until_p99_passes_the_threshold():
    measured = []

    def measure(rate: float) -> Step:
        measured.append(rate)
        return _step(rate, latency_ms=rate * 0.5)  # 35, 70, 140, 280 ms

    steps, reason = arrivals.step_up(70, 10_000, measure, max_p99_ms=200, max_errors=0)

    assert measured == [70, 140, 280, 560]
    assert [s.rate for s in steps] == measured
    assert "p99" in reason and "560" in reason


def test_the_step_up_stops_when_errors_appear_or_at_the_highest_rate():
    steps, reason = arrivals.step_up(70, 10_000, lambda r: _step(r, 5, failed=1 if r >= 280 else 0), 200, 0)
    assert [s.rate for s in steps] == [70, 140, 280] and "errors" in reason

    steps, reason = arrivals.step_up(70, 10_000, lambda r: _step(r, 5, failed=1 if r >= 280 else 0), 200, 5)
    assert [s.rate for s in steps][-1] == 8960 and "max-rate" in reason

    steps, _ = arrivals.step_up(70, 300, lambda r: _step(r, 5), 200, 0)
    assert [s.rate for s in steps] == [70, 140, 280]


def test_until_ends_the_schedule_and_only_claimed_requests_are_counted():
    """A schedule longer than needed, ended by `until` (bench/background.py stops the
    traffic when its job exits): the requests claimed are sent and counted, no more."""
    clock = FakeClock()

    def send(worker: int) -> str:
        clock.advance(0.001)
        return "ok"

    began = clock()
    step = arrivals.run_step(
        10, arrivals.uniform(10, 100.0), 0.0, send, 1, clock, clock.advance, 60, until=lambda: clock() >= began + 2.0
    )

    assert step.measured_from == pytest.approx(began + 0.05)
    assert step.scheduled == step.counted == step.answered
    assert 19 <= step.scheduled <= 21  # about 2 s of a 10/s schedule, not 100 s of it
