"""Whether a Pub/Sub-delivered event is too old to process (Google's "retrying
event-driven functions" pattern): the CloudEvent's `time`, Pub/Sub's publish time,
against now. Pure: the edge (common/cloud_events.py) decides what becomes of it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# RFC 3339 as Pub/Sub writes it; the fraction may have up to nine digits (nanoseconds),
# which datetime.fromisoformat does not take, so it is cut to microseconds first.
_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})")


def published_at(value: object) -> datetime | None:
    """The event's time, or None when it has none that parses (then it is processed:
    an event is never dropped for what cannot be judged)."""
    match = _RFC3339.fullmatch(str(value or "").strip())
    if match is None:
        return None
    seconds, fraction, zone = match.groups()
    text = f"{seconds}.{(fraction or '0')[:6]:0<6}{'+00:00' if zone in ('Z', 'z') else zone}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # a month 13, say
        return None


def too_old(event_time: object, max_age_s: float | None, now: datetime | None = None) -> float | None:
    """The event's age in seconds when it is older than `max_age_s`, else None. No limit
    (0 or None), no parsable time, or a time ahead of now (clocks differ): not too old."""
    if not max_age_s or max_age_s <= 0:
        return None
    published = published_at(event_time)
    if published is None:
        return None
    age_s = ((now or datetime.now(UTC)) - published).total_seconds()
    return age_s if age_s > max_age_s else None
