"""Automatic actions' rules and firings in Postgres (database role ledger_automation).

The rules are read plainly; whether a rule acts, and each firing's progress, go through
ledger.automation_fire and ledger.automation_record (db/schema/78_automation.sql),
which decide on the wallet's balance at that moment, under the rule's lock.
"""

from __future__ import annotations

import json
from typing import Any

from common.adapters.postgres import Statements
from common.automation import Firing, Rule

RULE_COLUMNS = """r.id, r.tenant, r.kind, r.wallet_id, w.asset_code, r.threshold, r.amount, r.funding_ref,
       r.period, r.member_ids"""
THRESHOLD_RULES = f"""
SELECT {RULE_COLUMNS} FROM ledger.automation_rules r JOIN ledger.wallets w ON w.id = r.wallet_id
 WHERE r.wallet_id = ANY(CAST(:wallets AS bigint[])) AND r.status = 'active'
   AND r.kind IN ('auto_topup', 'low_balance')
 ORDER BY r.id
"""
RECURRING_RULES = f"""
SELECT {RULE_COLUMNS} FROM ledger.automation_rules r JOIN ledger.wallets w ON w.id = r.wallet_id
 WHERE r.status = 'active' AND r.kind = 'recurring_allocation'
 ORDER BY r.id
"""
# Firings left in flight by a delivery that never came back (dead-lettered, say): the
# tick carries them on with the same keys, so a wallet's auto top-ups are not blocked.
STALLED = f"""
SELECT f.trigger, {RULE_COLUMNS} FROM ledger.automation_firings f
  JOIN ledger.automation_rules r ON r.id = f.rule_id JOIN ledger.wallets w ON w.id = r.wallet_id
 WHERE f.status IN ('started', 'charged') AND f.updated_at < clock_timestamp() - make_interval(secs => :age)
 ORDER BY f.id
 LIMIT 100
"""
CHILDREN = "SELECT id FROM ledger.wallets WHERE parent_id = :pool AND status = 'active' ORDER BY id"
FIRE = (
    "SELECT act, firing_id, firing_status, firing_charge_id"
    " FROM ledger.automation_fire(CAST(:rule AS bigint), :trigger)"
)
RECORD = (
    "SELECT ledger.automation_record(CAST(:firing AS bigint), :status, CAST(:charge AS text),"
    " CAST(:tx AS bigint), CAST(:detail AS jsonb))"
)


def _rule(row: list[Any]) -> Rule:
    rule_id, tenant, kind, wallet_id, asset, threshold, amount, funding_ref, period, member_ids = row
    members = tuple(int(m) for m in member_ids) if member_ids is not None else None
    return Rule(int(rule_id), tenant, kind, int(wallet_id), asset, threshold, amount, funding_ref, period, members)


class AutomationStore(Statements):
    def threshold_rules(self, wallet_ids: list[int]) -> list[Rule]:
        return [_rule(row) for row in self._run(THRESHOLD_RULES, wallets=wallet_ids)] if wallet_ids else []

    def recurring_rules(self) -> list[Rule]:
        return [_rule(row) for row in self._run(RECURRING_RULES)]

    def stalled(self, older_than_s: float) -> list[tuple[str, Rule]]:
        return [(row[0], _rule(row[1:])) for row in self._run(STALLED, age=float(older_than_s))]

    def children(self, pool_id: int) -> list[int]:
        return [int(row[0]) for row in self._run(CHILDREN, pool=pool_id)]

    def fire(self, rule_id: int, trigger: str) -> Firing:
        act, firing_id, status, charge_id = self._run(FIRE, rule=rule_id, trigger=trigger)[0]
        return Firing(bool(act), firing_id, status, charge_id)

    def record(
        self,
        firing_id: int,
        status: str,
        charge_id: str | None = None,
        transaction_id: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> bool:
        rows = self._run(
            RECORD,
            firing=firing_id,
            status=status,
            charge=charge_id,
            tx=transaction_id,
            detail=json.dumps(detail or {}),
        )
        return bool(rows[0][0])
