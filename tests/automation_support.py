"""Helpers of the automation's tests (integration and end-to-end): rules stored as the
wallets function would store them, the fake payment provider's control and charges,
and what the engine left in the ledger."""

from __future__ import annotations

import json
from typing import Any

import requests

from tests.support import sql


def provider(stack, **control: Any) -> None:
    requests.post(f"http://127.0.0.1:{stack.ports['payments']}/control", json=control).raise_for_status()


def charges(stack, funding_ref: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{stack.ports['payments']}/charges"
    return requests.get(url, params={"funding_ref": funding_ref}).json()["charges"]


def rule(stack, kind: str, wallet_id: int, tenant: str = "tests", **fields: Any) -> int:
    """A rule as the wallets function would have stored it (the table's owner here)."""
    columns = ["tenant", "kind", "wallet_id", "created_by", *fields]
    values = [":tenant", ":kind", ":wallet", "CAST(:by AS jsonb)", *(f":{name}" for name in fields)]
    if "member_ids" in fields:
        values[columns.index("member_ids")] = "CAST(:member_ids AS bigint[])"
    return sql(
        stack,
        f"INSERT INTO ledger.automation_rules ({', '.join(columns)}) VALUES ({', '.join(values)}) RETURNING id",
        tenant=tenant,
        kind=kind,
        wallet=wallet_id,
        by=json.dumps({"principal": "tests"}),
        **fields,
    )[0][0]


def auto_top_ups(stack, rule_id: int) -> list[list[Any]]:
    return sql(
        stack,
        "SELECT id, amount, external_ref FROM ledger.transactions"
        " WHERE metadata ->> 'automation_rule_id' = CAST(:r AS text) ORDER BY id",
        r=rule_id,
    )


def firings(stack, rule_id: int) -> list[str]:
    return [r[0] for r in sql(stack, "SELECT status FROM ledger.automation_firings WHERE rule_id = :r", r=rule_id)]


def stall(stack, rule_id: int) -> None:
    """The rule's firings left in flight long ago, as by a delivery that never came back:
    the tick carries them on."""
    backdated = "UPDATE ledger.automation_firings SET updated_at = now() - interval '1 hour' WHERE rule_id = :r"
    sql(stack, backdated, r=rule_id)
