"""A background job's pacing (common/pacing.py) as a unit: given a signal of heavy load
it slows down, given quiet it speeds up, within its floor and cap; the clock, the sleep
and the signal are fakes, so nothing here depends on the machine's speed."""

import pytest

from common.config import Settings
from common.pacing import Load, Pacer, PacingSettings, unpaced

QUIET = Load(in_transaction=1, lock_waits=0)
BUSY = Load(in_transaction=12, lock_waits=0)
WAITING = Load(in_transaction=2, lock_waits=1)


class Clock:
    def __init__(self):
        self.now = 0.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def pacer(loads, **settings):
    """A pacer reading `loads` in turn (the last one for ever after), after every batch
    unless the settings say otherwise."""
    clock, readings = Clock(), list(loads)
    settings.setdefault("probe_every_s", 0.0)

    def signal():
        return readings.pop(0) if len(readings) > 1 else readings[0]

    return Pacer(PacingSettings(**settings), signal=signal, clock=clock, sleep=clock.sleep), clock


def work(p, clock, batches, seconds=0.05):
    """`batches` batches of `seconds` each; the rest each one earned (taken before the next)."""
    rests = []
    for _ in range(batches):
        with p.batch():
            clock.now += seconds
        rests.append(p.owed_s)
    return rests


def test_heavy_load_makes_the_job_rest_longer_after_each_batch_down_to_its_floor():
    p, clock = pacer([BUSY], cap=0.5, floor=0.05)
    rests = work(p, clock, 8)
    assert (
        all(b >= a - 1e-9 for a, b in zip(rests, rests[1:], strict=False)) and rests[-1] > rests[0]
    )  # slower each batch
    assert p.duty == 0.05 and p.busy_readings == 8
    # at the floor a 50 ms batch is followed by 950 ms of rest: 5 % of each second
    assert rests[-1] == pytest.approx(0.05 * 0.95 / 0.05)
    assert clock.slept == rests[:-1]  # each rest taken before the next batch; none after the last


def test_lock_waits_alone_count_as_heavy_load():
    p, clock = pacer([WAITING], cap=0.5, floor=0.05)
    work(p, clock, 3)
    assert p.duty < (0.05 + 0.5) / 2 and p.busy_readings == 3


def test_quiet_lets_the_job_speed_up_to_its_cap_and_no_further():
    p, clock = pacer([BUSY] * 6 + [QUIET], cap=0.5, floor=0.05, step=0.05)
    work(p, clock, 6)
    slowest = p.duty
    rests = work(p, clock, 30)
    assert p.duty == 0.5 > slowest
    assert rests[0] > rests[-1]  # speeds up once the load goes
    assert rests[-1] == pytest.approx(0.05)  # at the cap of 0.5: as long resting as working


def test_busy_then_quiet_then_busy_follows_the_load_each_time():
    p, clock = pacer([QUIET] * 20 + [BUSY] * 3 + [QUIET] * 20, cap=0.4, floor=0.05, step=0.05)
    duties = []
    for _ in range(43):
        with p.batch():
            clock.now += 0.01
        duties.append(p.duty)
    assert duties[19] == 0.4  # sped up to the cap
    assert duties[22] == pytest.approx(0.05)  # three busy readings halved it to the floor
    assert duties[-1] == 0.4  # and back


def test_the_signal_is_read_at_most_once_per_probe_interval():
    reads = []

    def signal():
        reads.append(1)
        return QUIET

    clock = Clock()
    p = Pacer(PacingSettings(probe_every_s=1.0), signal=signal, clock=clock, sleep=clock.sleep)
    for _ in range(50):
        with p.batch():
            clock.now += 0.001  # 1 ms batches at duty <= 0.25: at most ~4 ms a batch with its rest
    assert 0 < len(reads) <= clock.now / 1.0 + 1


def test_a_signal_that_cannot_be_read_drops_the_job_to_its_floor():
    p, clock = pacer([None], cap=0.5, floor=0.1)
    work(p, clock, 1)
    assert p.duty == 0.1


def test_fixed_pacing_keeps_the_cap_whatever_the_load():
    p, clock = pacer([BUSY], mode="fixed", cap=0.2, floor=0.05)
    rests = work(p, clock, 5, seconds=0.1)
    assert p.duty == 0.2 and rests == [pytest.approx(0.4)] * 5 and p.readings == 0


def test_off_never_rests():
    p, clock = pacer([BUSY], mode="off")
    assert work(p, clock, 5) == [0.0] * 5 and p.rested_s == 0.0 and clock.slept == []
    assert unpaced().worked(1.0) == 0.0


def test_no_rest_is_longer_than_the_longest_allowed():
    """A reconciliation rests inside its snapshot, which the database ends after 120 s idle."""
    p, clock = pacer([BUSY], cap=0.5, floor=0.05, max_pause_s=5.0)
    assert max(work(p, clock, 6, seconds=30.0)) == 5.0


def test_a_signal_that_raises_counts_as_unread_and_never_fails_the_batch():
    def broken():
        raise OSError("the database went away")

    clock = Clock()
    p = Pacer(PacingSettings(probe_every_s=0.0), signal=broken, clock=clock, sleep=clock.sleep)
    with pytest.raises(ValueError, match="the batch's own"), p.batch():
        raise ValueError("the batch's own error")
    assert p.unread == 1 and p.duty == p.settings.floor


def test_a_batch_that_raises_still_counts_and_is_rested_for_before_the_next():
    p, clock = pacer([QUIET], mode="fixed", cap=0.5)
    with pytest.raises(RuntimeError), p.batch():
        clock.now += 0.2
        raise RuntimeError("a batch failed")
    assert p.batches == 1 and p.owed_s == pytest.approx(0.2) and clock.slept == []
    with p.batch():
        pass
    assert clock.slept == [pytest.approx(0.2)]


def test_the_report_says_how_the_job_worked_and_rested():
    p, clock = pacer([BUSY], cap=0.5, floor=0.1)
    work(p, clock, 4, seconds=0.1)
    report = p.report()
    assert report["batches"] == 4 and report["worked_s"] == pytest.approx(0.4)
    assert report["rested_s"] > report["worked_s"] and report["lowest_duty"] == 0.1 and report["unread"] == 0


@pytest.mark.parametrize(
    "values",
    [{"mode": "sometimes"}, {"floor": 0.0}, {"floor": 0.5, "cap": 0.2}, {"cap": 1.5}, {"max_pause_s": 0}],
)
def test_settings_that_make_no_sense_are_refused(values):
    with pytest.raises(ValueError):
        PacingSettings(**values)


def test_the_settings_come_from_the_environment():
    settings = Settings.from_env(
        {"LEDGER_JOB_PACING": "fixed", "LEDGER_JOB_DUTY_CAP": "0.5", "LEDGER_JOB_DUTY_FLOOR": "0.1",
         "LEDGER_JOB_BUSY_SESSIONS": "9"}
    ).pacing()  # fmt: skip
    assert settings == PacingSettings(mode="fixed", cap=0.5, floor=0.1, busy_sessions=9)
    with pytest.raises(ValueError):
        Settings.from_env({"LEDGER_JOB_DUTY_FLOOR": "0.9"})


def sized_run(item_s, most, batches=6, **settings):
    """Batches sized by the pacer, each item taking `item_s`: the sizes it chose."""
    p, clock = pacer([QUIET], **settings)
    sizes = []
    for _ in range(batches):
        size = p.size(most)
        sizes.append(size)
        with p.batch():
            clock.now += size * item_s
        p.counted(size)
    return sizes


def test_slow_items_make_small_batches_so_a_batch_stays_short():
    sizes = sized_run(item_s=0.005, most=500, batch_target_s=0.025)
    assert sizes[0] == 50  # a tenth of the job's bound before any batch was timed
    assert sizes[-1] == 5  # 5 ms an item: 5 fit the 25 ms target


def test_fast_items_grow_the_batch_up_to_the_jobs_own_bound():
    assert sized_run(item_s=0.00001, most=500)[-1] == 500


def test_unpaced_batches_are_the_jobs_own_size():
    assert sized_run(item_s=0.005, most=500, mode="off") == [500] * 6


def test_a_reading_that_slowed_down_is_heavy_load_even_with_few_sessions():
    """The reading's round trip is a live request's: three times the run's fastest (and
    over 2 ms) means the database's host is short of CPU."""
    fast, slow = Load(0, 0, probe_s=0.0005), Load(0, 0, probe_s=0.004)
    p, clock = pacer([fast, fast, slow, slow, fast], cap=0.5, floor=0.05)
    duties = []
    for _ in range(5):
        with p.batch():
            clock.now += 0.01
        duties.append(p.duty)
    assert duties[2] < duties[1] and duties[3] < duties[2] and duties[4] > duties[3]
    assert p.busy(Load(0, 0, probe_s=0.0012)) is False  # under the 2 ms floor: scheduling noise


def counted_run(item_s, items_per_batch, batches, **settings):
    """`batches` batches of `items_per_batch` items, each item taking `item_s`, counted."""
    p, clock = pacer([BUSY], **settings)
    for _ in range(batches):
        with p.batch():
            clock.now += items_per_batch * item_s
        p.counted(items_per_batch)
    return p, clock


def test_a_minimum_rate_bounds_the_time_to_clear_under_heavy_load():
    """The ERP export's bound: under a load that keeps the duty at its floor, 100
    batches of 1,000 items at 4,000 items/s unpaced would take 500 s; with a minimum of
    2,000 items/s the job rests only while ahead of that schedule, so it clears the
    100,000 in about 50 s (100,000 / 2,000), still resting half the time."""
    paced, paced_clock = counted_run(1 / 4000, 1000, 100, cap=0.25, floor=0.05)
    kept, kept_clock = counted_run(1 / 4000, 1000, 100, cap=0.25, floor=0.05, min_rate=2000)
    assert paced.duty == kept.duty == 0.05  # the load held both at the floor
    assert paced_clock.now > 450  # about 500 s: 0.25 s of work then 4.75 s of rest, once at the floor
    assert kept_clock.now <= 100_000 / 2000 + 0.25  # the schedule, and at most one batch over
    assert kept.rested_s == pytest.approx(kept_clock.now - 100 * 0.25) and kept.rested_s > 20
    assert kept.report()["rest_cut_s"] == pytest.approx(paced.rested_s - kept.rested_s)


def test_a_minimum_rate_cuts_no_rest_while_the_job_is_ahead_of_it():
    """Fast items: the duty's rests keep the run above the minimum anyway, so none is cut."""
    plain, _ = counted_run(1 / 100_000, 1000, 20, cap=0.25, floor=0.05)
    kept, _ = counted_run(1 / 100_000, 1000, 20, cap=0.25, floor=0.05, min_rate=2000)
    assert kept.rested_s == pytest.approx(plain.rested_s) and kept.rest_cut_s == 0


def test_a_minimum_rate_the_job_cannot_reach_means_no_rest_at_all():
    kept, clock = counted_run(1 / 1000, 1000, 10, cap=0.25, floor=0.05, min_rate=2000)
    assert kept.rested_s == 0 and clock.now == pytest.approx(10.0)  # as fast as unpaced


def test_the_export_keeps_its_minimum_rate_from_the_settings():
    settings = Settings.from_env({"LEDGER_ERP_MIN_RATE": "1500"})
    assert settings.erp_min_rate == 1500 and settings.pacing(settings.erp_min_rate).min_rate == 1500
    assert Settings().erp_min_rate == 2000 and Settings().pacing().min_rate == 0  # the other jobs: none
    with pytest.raises(ValueError):
        PacingSettings(min_rate=-1)
