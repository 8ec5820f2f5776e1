"""Automation rules in Postgres (db/migrations/0010_automation_rules.sql): their changes,
each one audited procedure call (db/schema/77_automation_rules.sql), and their reads.

Kept apart from LedgerAdmin and LedgerQueries: rules are their own concept, read by the
wallets function here and by the automation function through its own role. Refusals
come back from the procedures as their codes (common/errors.py DATABASE_REFUSALS).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from common.adapters.postgres import Statements

if TYPE_CHECKING:  # annotations only: the command models load with the first parsed body
    from common.ledger import commands


class RuleStore(Statements):
    def create(self, tenant: str, wallet_id: int, cmd: commands.CreateRule, actor: dict[str, Any]) -> dict[str, Any]:
        rows = self._run(
            "SELECT ledger.create_rule(:tenant, :kind, CAST(:wallet_id AS bigint), CAST(:threshold AS bigint),"
            " CAST(:amount AS bigint), :funding_ref, :period, CAST(:member_ids AS bigint[]),"
            " CAST(:metadata AS jsonb), CAST(:actor AS jsonb))",
            tenant=tenant,
            kind=cmd.kind,
            wallet_id=wallet_id,
            threshold=cmd.threshold,
            amount=cmd.amount,
            funding_ref=cmd.funding_ref,
            period=cmd.period,
            member_ids=None if cmd.member_ids is None else "{" + ",".join(map(str, cmd.member_ids)) + "}",
            metadata=json.dumps(dict(cmd.metadata)),
            actor=json.dumps(actor),
        )
        return dict(rows[0][0])

    def change(self, rule_id: int, tenant: str, change: str, actor: dict[str, Any]) -> dict[str, Any]:
        """`change` is pause, resume or delete; the rule as it is afterwards."""
        rows = self._run(
            "SELECT ledger.change_rule(:id, :tenant, :change, CAST(:actor AS jsonb))",
            id=rule_id,
            tenant=tenant,
            change=change,
            actor=json.dumps(actor),
        )
        return dict(rows[0][0])

    def get(self, rule_id: int) -> dict[str, Any] | None:
        """Any rule, of any tenant and status: the service decides who sees it."""
        rows = self._run("SELECT ledger.rule_json(id) FROM ledger.automation_rules WHERE id = :id", id=rule_id)
        return dict(rows[0][0]) if rows else None

    def of_wallet(self, wallet_id: int, tenant: str) -> list[dict[str, Any]]:
        """The tenant's rules on a wallet that are not deleted, in id order."""
        rows = self._run(
            "SELECT ledger.rule_json(id) FROM ledger.automation_rules"
            " WHERE wallet_id = :wallet_id AND tenant = :tenant AND status <> 'deleted' ORDER BY id",
            wallet_id=wallet_id,
            tenant=tenant,
        )
        return [dict(row[0]) for row in rows]
