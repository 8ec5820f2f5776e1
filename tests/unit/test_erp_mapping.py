"""The chart of accounts, journal lines per action, batch ids and the reconciliation compare."""

import pytest

from common.erp import reconcile
from common.erp.chart import DEFAULT_PATH, Chart, ChartError, load_chart
from common.erp.mapping import Leg, Mapper, Transaction, batch_id, totals, unbalanced

CHART = Chart.from_toml(
    """
[default]
customer = "2300"
funding = "1100"
revenue = "4000"
promotion = "6100"
breakage = "4100"
discount = "4900"
migration = "3900"
dormant = "2390"

[model.enterprise]
customer = "2310"

[asset.GOLD]
funding = "1150"

[asset.GOLD.model.enterprise]
customer = "2390"

[currency]
CREDITS = "XCR"
"""
)


def customer(wallet_id, amount, model="personal"):
    return Leg(wallet_id, f"owner-{wallet_id}", "customer", model, None, amount)


def system(role, amount, wallet_id=1):
    return Leg(wallet_id, "system", "system", "system", role, amount)


def transaction(action, legs, asset="USD", voids=None, transaction_id=10):
    return Transaction(transaction_id, action, asset, "2026-11-24T10:00:00Z", "u-1", "gpu", "ref", voids, tuple(legs))


def accounts(lines):
    """(account, debit, credit) per line."""
    return [(line["account"], line["debit"], line["credit"]) for line in lines]


def test_the_bundled_chart_loads_and_names_every_role():
    chart = load_chart(DEFAULT_PATH)
    assert chart.account("USD", "customer", "personal") == "2300"
    assert chart.account("USD", "customer", "reseller") == "2320"


@pytest.mark.parametrize(
    ("asset", "role", "model", "account"),
    [
        ("USD", "customer", "personal", "2300"),  # default
        ("USD", "customer", "enterprise", "2310"),  # by model
        ("GOLD", "funding", "system", "1150"),  # by asset
        ("GOLD", "customer", "enterprise", "2390"),  # by asset and model
        ("GOLD", "customer", "personal", "2300"),  # the asset section does not name it: default
    ],
)
def test_the_most_specific_section_names_the_account(asset, role, model, account):
    assert CHART.account(asset, role, model) == account


def test_a_chart_missing_a_default_or_naming_an_unknown_role_is_refused():
    with pytest.raises(ChartError, match="breakage"):
        Chart.from_toml('[default]\ncustomer = "1"\nfunding = "2"\nrevenue = "3"\npromotion = "4"\ndiscount = "5"\n')
    with pytest.raises(ChartError, match="unknown roles: cash"):
        Chart.from_dict({**CHART.sections, "model": {"enterprise": {"cash": "9"}}})
    with pytest.raises(ChartError, match="not valid TOML"):
        Chart.from_toml("[default")


def test_a_stored_chart_from_before_a_role_existed_still_loads_with_its_version():
    older = {**CHART.sections, "default": {k: v for k, v in CHART.sections["default"].items() if k != "discount"}}
    with pytest.raises(ChartError, match="discount"):
        Chart.from_dict(older)
    loaded = Chart.from_dict(older, complete=False)
    assert loaded.account("USD", "breakage", "system") == "4100" and loaded.version != CHART.version


def test_the_chart_version_follows_its_content():
    assert Chart.from_dict(dict(CHART.sections)).version == CHART.version
    changed = {**CHART.sections, "currency": {"CREDITS": "XXX"}}
    assert Chart.from_dict(changed).version != CHART.version


def test_top_up_bonus_usage_and_transfer_map_to_their_accounts():
    mapper = Mapper(CHART)
    assert accounts(mapper.lines(transaction("topup", [system("funding", -500), customer(7, 500)]))) == [
        ("1100", 500, 0),  # Dr cash clearing
        ("2300", 0, 500),  # Cr deferred revenue
    ]
    assert accounts(mapper.lines(transaction("bonus", [system("promotion", -50), customer(7, 50)]))) == [
        ("6100", 50, 0),  # Dr promotion expense
        ("2300", 0, 50),
    ]
    assert accounts(mapper.lines(transaction("usage", [customer(7, -30), system("revenue", 30)]))) == [
        ("2300", 30, 0),  # Dr deferred revenue
        ("4000", 0, 30),  # Cr revenue
    ]
    moved = mapper.lines(transaction("transfer", [customer(7, -20), customer(8, 20, "enterprise")]))
    assert accounts(moved) == [("2300", 20, 0), ("2310", 0, 20)]  # liability moves, no P&L account


def test_a_void_is_the_exact_reverse_of_its_original():
    mapper = Mapper(CHART)
    original = mapper.lines(transaction("usage", [customer(7, -30), system("revenue", 30)]))
    void = mapper.lines(transaction("void", [customer(7, 30), system("revenue", -30)], voids=10, transaction_id=11))
    assert [(a, c, d) for a, d, c in accounts(original)] == accounts(void)
    assert all(line["voids_transaction_id"] == 10 for line in void)


def test_dormancy_has_its_own_event_types():
    import dataclasses

    mapper = Mapper(CHART)
    broken = mapper.lines(transaction("dormant_breakage", [customer(7, -30), system("breakage", 30)]))
    assert [(line["event_type"], line["account"], line["product"]) for line in broken] == [
        ("dormant_breakage", "2300", "gpu"),  # Dr deferred revenue
        ("dormant_breakage", "4100", "gpu"),  # Cr breakage revenue
    ]
    reactivation = dataclasses.replace(
        transaction("void", [customer(7, 30), system("breakage", -30)], voids=10, transaction_id=11),
        event_type="dormant_reactivation",
    )
    assert {line["event_type"] for line in mapper.lines(reactivation)} == {"dormant_reactivation"}


def test_lines_carry_what_attributes_cost_and_revenue():
    (line, _) = Mapper(CHART).lines(transaction("usage", [customer(7, -30), system("revenue", 30)], asset="CREDITS"))
    assert line["transaction_id"] == 10 and line["event_id"] == "10"
    assert (line["usage_id"], line["product"], line["owner_id"], line["wallet_model"]) == (
        "u-1",
        "gpu",
        "owner-7",
        "personal",
    )
    assert (line["period"], line["currency"]) == ("2026-11-24", "XCR")


def test_every_line_names_who_posted_its_transaction():
    import dataclasses

    posted = dataclasses.replace(
        transaction("topup", [system("funding", -5), customer(7, 5)]), actor="payments", actor_role="payment_service"
    )
    assert {(line["actor"], line["actor_role"]) for line in Mapper(CHART).lines(posted)} == {
        ("payments", "payment_service")
    }
    # a transaction posted before callers existed names none
    assert {
        line["actor"] for line in Mapper(CHART).lines(transaction("topup", [system("funding", -5), customer(7, 5)]))
    } == {None}


def test_every_transactions_lines_balance_and_an_unbalanced_total_is_named():
    mapper = Mapper(CHART)
    lines = mapper.lines(transaction("topup", [system("funding", -5), customer(7, 5)])) + mapper.lines(
        transaction("usage", [customer(7, -3), system("revenue", 3)], asset="GOLD")
    )
    sums = totals(lines)
    assert sums == {"USD": {"debit": 5, "credit": 5}, "GOLD": {"debit": 3, "credit": 3}}
    assert unbalanced(sums) == []
    assert unbalanced({"USD": {"debit": 5, "credit": 4}}) == ["USD"]


def test_a_batch_id_is_the_same_for_the_same_stream_range_and_chart_only():
    first = batch_id("erp", ("0", 0), ("900", 12), "chart-a")
    assert first == batch_id("erp", ("0", 0), ("900", 12), "chart-a")
    assert first != batch_id("erp", ("0", 0), ("900", 13), "chart-a")
    assert first != batch_id("erp", ("0", 0), ("900", 12), "chart-b")
    assert first != batch_id("other", ("0", 0), ("900", 12), "chart-a")
    assert first.startswith("erp-")


def test_reconciliation_names_every_account_and_period_that_differs():
    ledger = reconcile.ledger_totals(
        [
            ("v1", "2026-11-24", "USD", "system", "system", "funding", "500", "0"),
            ("v1", "2026-11-24", "USD", "customer", "personal", None, "30", "500"),
            ("v1", "2026-11-24", "USD", "system", "system", "revenue", "0", "30"),
        ],
        {"v1": CHART},
    )
    erp = reconcile.erp_totals(
        [
            {"period": "2026-11-24", "account": "1100", "currency": "USD", "debit": 500, "credit": 0},
            {"period": "2026-11-24", "account": "2300", "currency": "USD", "debit": 30, "credit": 500},
            {"period": "2026-11-24", "account": "4000", "currency": "USD", "debit": 0, "credit": 30},
        ]
    )
    assert reconcile.differences(ledger, erp) == []
    erp[("2026-11-24", "4000", "USD")] = (0, 20)
    del erp[("2026-11-24", "1100", "USD")]
    assert reconcile.differences(ledger, erp) == [
        {
            "period": "2026-11-24",
            "account": "1100",
            "currency": "USD",
            "ledger_debit": 500,
            "ledger_credit": 0,
            "erp_debit": 0,
            "erp_credit": 0,
        },
        {
            "period": "2026-11-24",
            "account": "4000",
            "currency": "USD",
            "ledger_debit": 0,
            "ledger_credit": 30,
            "erp_debit": 0,
            "erp_credit": 20,
        },
    ]


def test_reconciliation_maps_each_batch_with_the_chart_it_was_built_with():
    older = Chart.from_dict({**CHART.sections, "default": {**CHART.sections["default"], "revenue": "4999"}})
    ledger = reconcile.ledger_totals(
        [
            ("old", "2026-11-23", "USD", "system", "system", "revenue", "0", "7"),
            ("new", "2026-11-24", "USD", "system", "system", "revenue", "0", "5"),
        ],
        {"old": older, "new": CHART},
    )
    assert ledger == {("2026-11-23", "4999", "USD"): (0, 7), ("2026-11-24", "4000", "USD"): (0, 5)}


def test_lines_carry_the_event_type_the_customer_and_the_reseller():
    usage = Transaction(
        10,
        "usage",
        "USD",
        "2026-11-24T10:00:00Z",
        "job-1",
        "llm",
        None,
        None,
        (customer(7, -5, model="reseller"), system("revenue", 5)),
        customer_id="end-customer",
        reseller_id="reseller-1",
    )
    lines = Mapper(CHART).lines(usage)
    assert {(line["event_type"], line["customer_id"], line["reseller_id"]) for line in lines} == {
        ("revenue", "end-customer", "reseller-1")
    }
    expiry = Mapper(CHART).lines(transaction("expiry", [customer(7, -3), system("breakage", 3)]))
    assert accounts(expiry) == [("2300", 3, 0), ("4100", 0, 3)]
    assert {line["event_type"] for line in expiry} == {"breakage_revenue"}
    wholesale = transaction("topup", [system("funding", -8), system("discount", -2), customer(7, 10, "reseller")])
    assert accounts(Mapper(CHART).lines(wholesale)) == [("1100", 8, 0), ("4900", 2, 0), ("2300", 0, 10)]


def test_a_chart_excluding_migrations_gives_them_no_lines_and_has_a_version_of_its_own(monkeypatch):
    from common import bootstrap
    from common.config import get_settings

    legs = (Leg(1, "system", "system", "system", "migration", -5), Leg(2, "bob", "customer", "personal", None, 5))
    opening = Transaction(
        9, "opening_balance", "TST", "2026-11-30T00:00:00Z", None, None, None, None, legs, migration=True
    )
    excluding = CHART.excluding_migrations()
    assert excluding.version != CHART.version and excluding.excludes_migrations and not CHART.excludes_migrations
    assert Mapper(excluding).lines(opening) == [] and len(Mapper(CHART).lines(opening)) == 2

    monkeypatch.setenv("LEDGER_ERP_EXCLUDE_MIGRATIONS", "true")
    get_settings.cache_clear()
    try:
        assert bootstrap.chart.__wrapped__().excludes_migrations
    finally:
        get_settings.cache_clear()
