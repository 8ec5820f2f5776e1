"""Reconciliation: the ledger's debits and credits per period and GL account against
what the ERP has booked. Pure: the caller reads both sides."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from common.erp.chart import Chart

Key = tuple[str, str, str]  # period, account, currency


def ledger_totals(rows: Iterable[Iterable[Any]], charts: Mapping[str, Chart]) -> dict[Key, tuple[int, int]]:
    """Rows of (chart version, period, asset, wallet kind, model, system role, debit,
    credit), summed per period and the GL account and currency that the row's chart (the
    one its batch was built with) maps them to."""
    sums: dict[Key, tuple[int, int]] = {}
    for version, period, asset, kind, model, role, debit, credit in rows:
        chart = charts[version]
        account = chart.account(asset, "customer" if kind == "customer" else role, model)
        key = (period, account, chart.currency(asset))
        before = sums.get(key, (0, 0))
        sums[key] = (before[0] + int(debit), before[1] + int(credit))
    return sums


def erp_totals(rows: Iterable[dict[str, Any]]) -> dict[Key, tuple[int, int]]:
    sums: dict[Key, tuple[int, int]] = {}
    for row in rows:
        key = (str(row["period"]), str(row["account"]), str(row["currency"]))
        before = sums.get(key, (0, 0))
        sums[key] = (before[0] + int(row["debit"]), before[1] + int(row["credit"]))
    return sums


def differences(ledger: dict[Key, tuple[int, int]], erp: dict[Key, tuple[int, int]]) -> list[dict[str, Any]]:
    """Every period, account and currency where the two sides disagree."""
    found = []
    for key in sorted(set(ledger) | set(erp)):
        ours, theirs = ledger.get(key, (0, 0)), erp.get(key, (0, 0))
        if ours != theirs:
            period, account, currency = key
            found.append(
                {
                    "period": period,
                    "account": account,
                    "currency": currency,
                    "ledger_debit": ours[0],
                    "ledger_credit": ours[1],
                    "erp_debit": theirs[0],
                    "erp_credit": theirs[1],
                }
            )
    return found
