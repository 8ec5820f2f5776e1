"""Paging cursors: opaque, signed, and good only for the next page of the query that
produced them (common/cursors.py)."""

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest

from common.config import Settings
from common.cursors import Cursors, history_scope
from common.errors import InvalidRequest

KEY = b"k" * 32
CURSORS = Cursors(KEY)
SCOPE = history_scope(16, "acme", "usage", datetime(2026, 1, 1, tzinfo=UTC), None)


def refused(cursor, scope=SCOPE, cursors=CURSORS):
    with pytest.raises(InvalidRequest) as caught:
        cursors.decode(cursor, scope)
    return caught.value.code == "invalid_cursor" and caught.value.status == 400


@pytest.mark.parametrize("position", [1, 29, 2**32, 2**63 - 1])
def test_a_cursor_brings_back_its_position_for_its_own_query(position):
    assert CURSORS.decode(CURSORS.encode(position, SCOPE), SCOPE) == position


def test_a_cursor_is_opaque_and_url_safe():
    cursor = CURSORS.encode(29, SCOPE)
    assert len(cursor) == 32 and cursor.replace("-", "").replace("_", "").isalnum()
    assert "29" not in cursor and base64.urlsafe_b64encode(b"e29").decode().rstrip("=") not in cursor


@pytest.mark.parametrize(
    "other",
    [
        history_scope(17, "acme", "usage", datetime(2026, 1, 1, tzinfo=UTC), None),  # another wallet
        history_scope(16, "globex", "usage", datetime(2026, 1, 1, tzinfo=UTC), None),  # another tenant
        history_scope(16, "acme", None, datetime(2026, 1, 1, tzinfo=UTC), None),  # another action filter
        history_scope(16, "acme", "topup", datetime(2026, 1, 1, tzinfo=UTC), None),
        history_scope(16, "acme", "usage", None, None),  # another time window
        history_scope(16, "acme", "usage", datetime(2026, 1, 2, tzinfo=UTC), None),
        history_scope(16, "acme", "usage", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)),
    ],
)
def test_a_cursor_taken_to_another_query_is_refused(other):
    assert refused(CURSORS.encode(29, SCOPE), other)


def test_the_same_instant_written_in_another_zone_is_the_same_query():
    plus_seven = datetime(2026, 1, 1, 7, tzinfo=timezone(timedelta(hours=7)))
    same = history_scope(16, "acme", "usage", plus_seven, None)
    assert CURSORS.decode(CURSORS.encode(29, SCOPE), same) == 29


def test_a_cursor_signed_with_another_key_is_refused():
    assert refused(Cursors(b"o" * 32).encode(29, SCOPE))


def test_every_altered_character_is_refused():
    cursor = CURSORS.encode(29, SCOPE)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for index, char in enumerate(cursor):
        replacement = alphabet[(alphabet.index(char) + 1) % len(alphabet)]
        assert refused(cursor[:index] + replacement + cursor[index + 1 :])


def test_a_position_of_ones_choosing_can_not_be_forged():
    genuine = base64.urlsafe_b64decode(CURSORS.encode(29, SCOPE))
    forged = (2**63 - 1).to_bytes(8, "big") + genuine[8:]
    assert refused(base64.urlsafe_b64encode(forged).decode())


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "ZTI5",  # the unsigned cursors this API gave before
        base64.urlsafe_b64encode(b"e99999999999999999999").decode().rstrip("="),
        "e99999999999999999999",
        "%%%",
        "A" * 31,
        "A" * 33,
        "A" * 32,
        "A" * 31 + "=",
        "A" * 31 + "+",
        "A" * 31 + "/",
        "A" * 31 + "\u00b2",
        "A" * 31 + "\n",
        "\x00" * 32,
    ],
)
def test_a_malformed_cursor_is_a_400_never_an_error_of_another_kind(cursor):
    assert refused(cursor)


def test_a_short_key_is_refused():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Cursors(b"short")


@pytest.fixture
def fresh_signer(monkeypatch):
    from common import bootstrap

    bootstrap.cursors.reset()
    yield lambda key: monkeypatch.setattr(bootstrap, "get_settings", lambda: Settings(cursor_key=key))
    bootstrap.cursors.reset()


def test_google_cloud_without_a_cursor_key_refuses_to_start(monkeypatch, fresh_signer):
    from common import bootstrap

    monkeypatch.setenv("K_SERVICE", "wallets")
    fresh_signer("")
    with pytest.raises(RuntimeError, match="LEDGER_CURSOR_KEY"):
        bootstrap.cursors()


def test_instances_sharing_the_configured_key_read_each_others_cursors(fresh_signer):
    from common import bootstrap

    fresh_signer("s" * 43)
    assert bootstrap.cursors().decode(Cursors(b"s" * 43).encode(29, SCOPE), SCOPE) == 29


def test_locally_without_a_key_cursors_still_page_within_the_process(monkeypatch, fresh_signer):
    from common import bootstrap

    monkeypatch.delenv("K_SERVICE", raising=False)
    fresh_signer("")
    signer = bootstrap.cursors()
    assert signer.decode(signer.encode(29, SCOPE), SCOPE) == 29
