"""A migration's source rows: what is rejected and why, and row ids repeated in a file."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from common.idempotency import RESERVED_KEY_PREFIXES
from common.ledger import commands
from common.migration import OpeningRow, Rejected, first_of_each_row_id, parse_opening, posting_key, read_rows

NOW = datetime(2026, 11, 30, tzinfo=UTC)
GOOD = {"row_id": "r1", "owner": "alice", "asset": "EUR", "amount": "250", "model": "personal"}


def test_a_good_row_parses_and_its_hash_follows_its_content():
    row = parse_opening(GOOD, NOW)
    assert isinstance(row, OpeningRow) and row.amount == 250 and row.parent is None
    changed = parse_opening({**GOOD, "amount": "251"}, NOW)
    assert isinstance(changed, OpeningRow) and changed.request_hash() != row.request_hash()


def test_bad_rows_are_rejected_with_a_reason():
    for bad in (
        {**GOOD, "amount": "1.5"},
        {**GOOD, "amount": "0"},
        {**GOOD, "row_id": "a:b"},
        {**GOOD, "owner": ""},
        {**GOOD, "model": "gold"},
        {**GOOD, "parent": "7"},  # a personal wallet has none
        {**GOOD, "lot_expires_at": "2020-01-01T00:00:00+00:00"},
        {**GOOD, "lot_expires_at": "2999-01-01T00:00:00"},  # no offset
    ):
        rejected = parse_opening(bad, NOW)
        assert isinstance(rejected, Rejected) and rejected.reason, bad


def test_a_repeated_row_id_is_rejected_after_its_first():
    rows = [parse_opening(GOOD, NOW), parse_opening({**GOOD, "owner": "bob"}, NOW)]
    valid, rejected = first_of_each_row_id(rows)
    assert [r.owner for r in valid] == ["alice"] and "earlier" in rejected[0].reason


def test_jsonl_and_csv_rows_without_an_id_get_their_position():
    assert [r["row_id"] for r in read_rows('{"owner": "a"}\n\n{"owner": "b"}\n', "x.jsonl")] == ["1", "3"]
    assert [r["row_id"] for r in read_rows("owner,amount\na,1\nb,2\n", "x.csv")] == ["1", "2"]


def test_migration_keys_are_reserved_at_the_edges():
    assert posting_key("m1", "r1").startswith(RESERVED_KEY_PREFIXES)


@pytest.mark.parametrize("name", ["migration_id", "migration_row"])
def test_a_callers_metadata_may_not_mark_a_migration(name):
    """A migration's rollback and its wallets are found by these marks: a caller who
    could set them could steer what a rollback voids, or which wallet an import pays."""
    marked = {name: "l1-to-l2"}
    with pytest.raises(ValidationError, match="reserved for bulk migrations"):
        commands.CreateWallet.model_validate({"owner_id": "o", "asset": "TST", "metadata": marked})
    with pytest.raises(ValidationError, match="reserved for bulk migrations"):
        commands.Usage.model_validate(
            {"wallet_id": 1, "asset": "TST", "amount": 1, "usage_id": "u", "product": "p", "metadata": marked}
        )
