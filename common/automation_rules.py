"""Use cases: automation rules managed over HTTP within the caller's tenant (create,
list, get, pause, resume, delete); part of LedgerService.

A rule belongs to its creator's tenant. Who may do what (docs/automation.md):
  - an auto top-up needs `topup` on the wallet (the payment service holds the funding
    reference), a low-balance notice `wallet_admin` on it, a recurring allocation
    `allocate` on the pool and every member it names;
  - pausing, resuming and deleting need the scope that creating the rule needs;
  - reading needs `read` on the rule's wallet.
A rule of another tenant, or on a wallet outside the caller's read boundary, answers
404 rule_not_found, as one that does not exist: rule ids can't be probed. The rule's
procedures check the tenant again (db/schema/77_automation_rules.sql).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from common.auth.callers import Caller, WalletFacts, authorize
from common.errors import Forbidden, NotFound

if TYPE_CHECKING:
    from common.adapters.rule_store import RuleStore
    from common.ledger import commands

# the scope a rule of each kind needs, to be created and changed
RULE_SCOPES = {"auto_topup": "topup", "low_balance": "wallet_admin", "recurring_allocation": "allocate"}


def rule_hidden(rule_id: int) -> NotFound:
    return NotFound(f"rule {rule_id} does not exist", code="rule_not_found", details={"rule_id": rule_id})


def _wallets(kind: str, wallet_id: int, member_ids: list[int] | None) -> list[int]:
    """What a rule acts on: its wallet, and a recurring allocation's listed members."""
    return [wallet_id, *(member_ids or ())] if kind == "recurring_allocation" else [wallet_id]


class AutomationRules:
    """Mixed into LedgerService, whose `_rules` store and `_facts` these use."""

    _rules: RuleStore | None

    def _facts(self, wallet_ids: list[int]) -> Mapping[int, WalletFacts]:
        raise NotImplementedError  # LedgerService's

    def _rule_store(self) -> RuleStore:
        if self._rules is None:
            raise RuntimeError("managing automation rules needs the rule store")
        return self._rules

    def create_rule(self, caller: Caller, wallet_id: int, cmd: commands.CreateRule) -> dict[str, Any]:
        grant = authorize(caller, RULE_SCOPES[cmd.kind], _wallets(cmd.kind, wallet_id, cmd.member_ids), self._facts)
        return self._rule_store().create(caller.tenant, wallet_id, cmd, caller.actor(grant))

    def list_rules(self, caller: Caller, wallet_id: int) -> list[dict[str, Any]]:
        """The caller's tenant's rules on the wallet that are not deleted."""
        authorize(caller, "read", [wallet_id], self._facts)
        return self._rule_store().of_wallet(wallet_id, caller.tenant)

    def get_rule(self, caller: Caller, rule_id: int) -> dict[str, Any]:
        """A rule of the caller's tenant, a deleted one too (kept for the record)."""
        return self._reachable_rule(caller, rule_id)

    def pause_rule(self, caller: Caller, rule_id: int) -> dict[str, Any]:
        return self._change_rule(caller, rule_id, "pause")

    def resume_rule(self, caller: Caller, rule_id: int) -> dict[str, Any]:
        """Active again, and a threshold rule armed again: the next event below its
        threshold fires it (after a declined charge, this is how to try again)."""
        return self._change_rule(caller, rule_id, "resume")

    def delete_rule(self, caller: Caller, rule_id: int) -> dict[str, Any]:
        return self._change_rule(caller, rule_id, "delete")

    def _change_rule(self, caller: Caller, rule_id: int, change: str) -> dict[str, Any]:
        rule = self._reachable_rule(caller, rule_id)
        wallets = _wallets(rule["kind"], rule["wallet_id"], rule["member_ids"])
        grant = authorize(caller, RULE_SCOPES[rule["kind"]], wallets, self._facts, lambda _: rule_hidden(rule_id))
        return self._rule_store().change(rule_id, caller.tenant, change, caller.actor(grant))

    def _reachable_rule(self, caller: Caller, rule_id: int) -> dict[str, Any]:
        """The rule, when it is the caller's tenant's and its wallet is inside the
        caller's read boundary; else the same 404 as for no rule at all. A caller that
        can't read anything is refused first, whatever the id."""
        if not caller.grants_with("read"):
            raise Forbidden("this caller may not read", details={"scope": "read"})
        rule = self._rule_store().get(rule_id)
        if rule is None or rule["tenant"] != caller.tenant:
            raise rule_hidden(rule_id)
        authorize(caller, "read", [rule["wallet_id"]], self._facts, lambda _: rule_hidden(rule_id))
        return rule
