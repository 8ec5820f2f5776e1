"""The local Cloud Scheduler stand-in fires on the cron schedules the ledger uses."""

import datetime as dt

from emulators.scheduler import due

TUESDAY_0230 = dt.datetime(2026, 11, 24, 2, 30, tzinfo=dt.UTC)


def test_fixed_minute_and_hour():
    assert due("30 2 * * *", TUESDAY_0230)
    assert not due("30 3 * * *", TUESDAY_0230)


def test_steps_lists_and_weekdays():
    assert due("*/15 * * * *", TUESDAY_0230)
    assert not due("*/15 * * * *", TUESDAY_0230.replace(minute=31))
    assert due("* * * * *", TUESDAY_0230)
    assert due("0,30 * * * 2", TUESDAY_0230)  # Tuesday is 2
    assert not due("0,30 * * * 0", TUESDAY_0230)
