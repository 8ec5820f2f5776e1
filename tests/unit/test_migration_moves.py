"""A migration's plan rows: what is rejected, what "all" resolves to, and a request hash
that does not depend on the balance (so a second run replays the first)."""

from common.migration import Rejected, first_of_each_row_id
from common.migration_moves import MoveRow, parse_move, resolve


def test_plan_rows_are_parsed_or_rejected_with_a_reason():
    assert parse_move({"row_id": "1", "source_wallet": "7", "target_wallet": "8", "amount": "ALL"}) == MoveRow(
        "1", 7, 8, None
    )
    assert parse_move({"row_id": "2", "source_wallet": 7, "target_wallet": 8, "amount": 5}) == MoveRow("2", 7, 8, 5)
    for bad in (
        {"row_id": "3", "source_wallet": "7", "target_wallet": "7", "amount": "5"},
        {"row_id": "4", "source_wallet": "x", "target_wallet": "8", "amount": "5"},
        {"row_id": "5", "source_wallet": "7", "target_wallet": "8", "amount": "0"},
        {"row_id": "6", "source_wallet": "7", "target_wallet": "8", "amount": "some"},
        {"row_id": "a:b", "source_wallet": "7", "target_wallet": "8", "amount": "5"},
    ):
        assert isinstance(parse_move(bad), Rejected), bad


def test_a_repeated_row_id_is_rejected_after_its_first():
    valid, rejected = first_of_each_row_id([MoveRow("1", 7, 8, 5), MoveRow("1", 7, 9, 5)])
    assert valid == [MoveRow("1", 7, 8, 5)] and [r.source["target_wallet"] for r in rejected] == ["9"]


def test_all_is_what_the_source_can_spend_after_the_rows_before_it():
    rows = [MoveRow("1", 7, 8, 30), MoveRow("2", 7, 9, None), MoveRow("3", 8, 9, None), MoveRow("4", 5, 9, None)]
    assert [amount for _, amount in resolve(rows, {7: 100, 8: 1, 5: -4})] == [30, 70, 31, 0]


def test_the_request_hash_of_all_is_the_rows_not_the_balances():
    """ "all" posts whatever the source holds when its batch runs; a run after a restart
    must replay that posting, not refuse it as a reused key with another request."""
    from common.migrate_moves import _move_params
    from common.migration_moves import WalletFacts

    row, source = MoveRow("1", 7, 8, None), WalletFacts("TST", "personal", "customer", "active", 0)
    first = _move_params("m", row, 100, source, {"principal": "t"})
    after_a_restart = _move_params("m", row, 40, source, {"principal": "t"})
    assert first["amount"] != after_a_restart["amount"]
    assert first["request_hash"] == after_a_restart["request_hash"] == row.request_hash()
    assert MoveRow("1", 7, 8, None).request_hash() != MoveRow("1", 7, 8, 100).request_hash()
