"""Strict parsing at the edge: loose types are refused, never coerced."""

import pytest
from pydantic import ValidationError

from common.ledger import commands

GOOD = {"wallet_id": 1, "asset": "IDR", "amount": 100, "external_ref": "pay_1"}


def test_a_good_top_up_parses():
    assert commands.TopUp.model_validate(GOOD).amount == 100


@pytest.mark.parametrize("amount", [1.0, 1.5, "100", True, False, 0, -1, 2**63, None, [1], {"v": 1}, float("nan")])
def test_amounts_must_be_positive_int64_integers(amount):
    with pytest.raises(ValidationError):
        commands.TopUp.model_validate({**GOOD, "amount": amount})


def test_the_largest_int64_amount_is_accepted():
    assert commands.TopUp.model_validate({**GOOD, "amount": 2**63 - 1}).amount == 2**63 - 1


@pytest.mark.parametrize(
    "change",
    [{"wallet_id": "1"}, {"wallet_id": 0}, {"asset": "idr"}, {"asset": ""}, {"external_ref": ""}, {"unexpected": 1}],
)
def test_other_fields_are_strict_too(change):
    with pytest.raises(ValidationError):
        commands.TopUp.model_validate({**GOOD, **change})


def test_missing_fields_are_refused():
    with pytest.raises(ValidationError):
        commands.Usage.model_validate({"wallet_id": 1, "asset": "IDR", "amount": 1})


def test_history_query_converts_text_but_bounds_it():
    query = commands.HistoryQuery.model_validate({"limit": "10", "action": "usage", "from": "2026-01-01T00:00:00Z"})
    assert (query.limit, query.action, query.from_.year) == (10, "usage", 2026)
    for bad in ({"limit": "0"}, {"limit": "1000"}, {"action": "steal"}, {"from": "2026-01-01T00:00:00"}):
        with pytest.raises(ValidationError):
            commands.HistoryQuery.model_validate(bad)


def test_update_wallet_needs_something_to_change():
    with pytest.raises(ValidationError):
        commands.UpdateWallet.model_validate({})
