"""Firestore's JSON encoding of document fields, as common/adapters/firestore_rest.py
writes and reads it (the wire format is checked against the official client in
tests/integration/test_firestore_rest.py)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from common.adapters.firestore_rest import decode_fields, encode_fields, encode_value, parse_timestamp


def test_a_record_survives_encoding_and_decoding():
    record = {
        "key": "order-1",
        "status": 422,
        "big": 2**63 - 1,
        "ratio": 0.25,
        "done": False,
        "nothing": None,
        "at": datetime(2026, 11, 25, 4, 5, 6, 789012, tzinfo=UTC),
        "raw": b"\x00\xff",
        "nested": {"list": [1, "two", {"three": 3.0}], "empty": {}},
    }
    assert decode_fields(encode_fields(record)) == record


def test_integers_travel_as_strings_and_booleans_stay_booleans():
    # JSON numbers lose precision past 2**53; Firestore's integerValue is a decimal string
    assert encode_value(2**63 - 1) == {"integerValue": "9223372036854775807"}
    assert encode_value(True) == {"booleanValue": True}


def test_timestamps_are_written_in_utc_whatever_their_zone():
    at = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=8)))
    assert encode_value(at) == {"timestampValue": "2026-11-25T04:00:00.000000Z"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T04:05:06Z", datetime(2026, 11, 25, 4, 5, 6, tzinfo=UTC)),
        ("2026-11-25T04:05:06.5Z", datetime(2026, 11, 25, 4, 5, 6, 500000, tzinfo=UTC)),
        # Firestore keeps nanoseconds; Python's datetime stops at microseconds
        ("2026-11-25T04:05:06.123456789Z", datetime(2026, 11, 25, 4, 5, 6, 123456, tzinfo=UTC)),
        ("2026-11-25T12:05:06+08:00", datetime(2026, 11, 25, 4, 5, 6, tzinfo=UTC)),
    ],
)
def test_timestamps_are_read_in_every_form_firestore_writes(text, expected):
    parsed = parse_timestamp(text)
    assert parsed == expected and parsed.tzinfo == UTC


def test_a_naive_datetime_is_refused_rather_than_guessed():
    with pytest.raises(ValueError, match="timezone-aware"):
        encode_value(datetime(2026, 11, 25, 4, 5, 6))


def test_a_value_without_a_firestore_type_is_refused():
    with pytest.raises(TypeError, match="set"):
        encode_value({1, 2})


def test_non_finite_doubles_are_spelled_as_firestore_spells_them():
    assert [encode_value(x) for x in (float("nan"), float("inf"), float("-inf"))] == [
        {"doubleValue": "NaN"},
        {"doubleValue": "Infinity"},
        {"doubleValue": "-Infinity"},
    ]
    assert decode_fields(encode_fields({"x": float("inf")})) == {"x": float("inf")}
