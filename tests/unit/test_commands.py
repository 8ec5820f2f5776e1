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


@pytest.mark.parametrize(
    "change",
    [
        {"external_ref": "pay\x00"},
        {"description": "\x00"},
        {"metadata": {"k\x00": 1}},
        {"metadata": {"k": "v\x00"}},
        {"metadata": {"\ud800": 1}},
    ],
)
def test_text_postgres_cannot_hold_is_refused(change):
    with pytest.raises(ValidationError):
        commands.TopUp.model_validate({**GOOD, **change})


@pytest.mark.parametrize(
    "expires_at",
    [
        1234,
        0.5,
        "1234",
        "0.5",
        "2099-01-01T00:00:00",
        "tomorrow",
        "2099-01-01T00:00:00-22:56",
        "0001-01-01T00:00:00+01:00",
    ],
)
def test_a_time_is_an_iso_string_with_its_zone(expires_at):
    with pytest.raises(ValidationError):
        commands.TopUp.model_validate({**GOOD, "expires_at": expires_at})
    assert commands.TopUp.model_validate({**GOOD, "expires_at": "2099-01-01T00:00:00+07:00"}).expires_at.year == 2099


def test_missing_fields_are_refused():
    with pytest.raises(ValidationError):
        commands.Usage.model_validate({"wallet_id": 1, "asset": "IDR", "amount": 1})


def test_history_query_converts_text_but_bounds_it():
    query = commands.HistoryQuery.model_validate({"limit": "10", "action": "usage", "from": "2026-01-01T00:00:00Z"})
    assert (query.limit, query.action, query.from_.year) == (10, "usage", 2026)
    bad_queries = (
        {"limit": "0"},
        {"limit": "1000"},
        {"action": "steal"},
        {"from": "2026-01-01T00:00:00"},
        {"to": "0.5"},
    )
    for bad in bad_queries:
        with pytest.raises(ValidationError):
            commands.HistoryQuery.model_validate(bad)


def test_update_wallet_needs_something_to_change():
    with pytest.raises(ValidationError):
        commands.UpdateWallet.model_validate({})


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "auto_topup", "threshold": 0, "amount": 5000, "funding_ref": "pm_1"},
        {"kind": "low_balance", "threshold": 2**63 - 1, "metadata": {"channel": "email"}},
        {"kind": "recurring_allocation", "amount": 1, "period": "hour"},
        {"kind": "recurring_allocation", "amount": 1, "period": "month", "member_ids": [4, 5]},
    ],
)
def test_each_kind_of_rule_parses_with_its_fields(body):
    assert commands.CreateRule.model_validate(body).kind == body["kind"]


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "auto_topup", "threshold": 10, "amount": 5000},  # no funding_ref
        {"kind": "auto_topup", "threshold": 10, "amount": 5000, "funding_ref": "pm", "period": "day"},
        {"kind": "low_balance"},
        {"kind": "low_balance", "threshold": 10, "amount": 1},
        {"kind": "low_balance", "threshold": -1},
        {"kind": "low_balance", "threshold": 10.0},
        {"kind": "low_balance", "threshold": "10"},
        {"kind": "low_balance", "threshold": 2**63},
        {"kind": "recurring_allocation", "amount": 1},
        {"kind": "recurring_allocation", "amount": 0, "period": "day"},
        {"kind": "recurring_allocation", "amount": 1, "period": "year"},
        {"kind": "recurring_allocation", "amount": 1, "period": "day", "threshold": 3},
        {"kind": "recurring_allocation", "amount": 1, "period": "day", "member_ids": []},
        {"kind": "recurring_allocation", "amount": 1, "period": "day", "member_ids": [4, 4]},
        {"kind": "recurring_allocation", "amount": 1, "period": "day", "member_ids": [0]},
        {"kind": "recurring_allocation", "amount": 1, "period": "day", "member_ids": list(range(1, 1002))},
        {"kind": "auto_topup", "threshold": 1, "amount": 1, "funding_ref": "pm\x00"},
        {"kind": "auto_topup", "threshold": 1, "amount": 1, "funding_ref": "x" * 201},
        {"kind": "overdraft", "threshold": 1},
        {"kind": "low_balance", "threshold": 1, "wallet_id": 3},  # the wallet is the path's
    ],
)
def test_a_rule_takes_only_its_kinds_fields_strictly(body):
    with pytest.raises(ValidationError):
        commands.CreateRule.model_validate(body)
