"""A stand-in for Cloud Scheduler on the dev stack: publishes each tick topic's message
on its cron schedule, so the scheduled functions run locally as they do in Google Cloud.
Each triggered function's deploy.json names the common/config.py settings of its topic
and schedule (infra/functions.py). The test stack has none: tests publish their ticks
themselves.

Cron fields: minute hour day-of-month month day-of-week, each `*`, `*/n`, `n` or a
comma list of those (what the ledger's schedules use). Times are UTC.

Run: python -m emulators.scheduler --profile dev
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from common.config import Settings
from emulators.stack import FUNCTIONS, Stack
from infra.functions import tick_functions


def _field_matches(spec: str, value: int) -> bool:
    for part in spec.split(","):
        if part == "*":
            return True
        if part.startswith("*/"):
            if value % int(part[2:]) == 0:
                return True
        elif int(part) == value:
            return True
    return False


def due(schedule: str, at: dt.datetime) -> bool:
    minute, hour, day, month, weekday = schedule.split()
    return (
        _field_matches(minute, at.minute)
        and _field_matches(hour, at.hour)
        and _field_matches(day, at.day)
        and _field_matches(month, at.month)
        and _field_matches(weekday, at.isoweekday() % 7)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="dev")
    stack = Stack(parser.parse_args().profile)
    settings = Settings.from_env(stack.env())
    jobs = [
        (getattr(settings, function.tick_topic_setting), getattr(settings, function.tick_schedule_setting))
        for function in tick_functions(FUNCTIONS).values()
    ]
    while True:
        now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        for topic, schedule in jobs:
            if due(schedule, now):
                try:
                    stack.publish(topic)
                except OSError as error:  # the emulator restarting: the next tick comes anyway
                    print(f"tick {topic} not published: {error}", flush=True)
        time.sleep(60 - dt.datetime.now(dt.UTC).second + 0.5)


if __name__ == "__main__":
    main()
