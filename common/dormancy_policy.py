"""`python -m common.dormancy policy list|set`: the dormancy policies per asset and
wallet model (docs/dormancy.md), as the operator sets them.

    policy list
    policy set ASSET MODEL --inactivity 365d --warning 30d --action mark|sweep|breakage
               --reactivation automatic|operator|delete

It runs as the operator's login, which may read the policies and set them only through
ledger.dormancy_set_policy(), audited (99_grants.sql). Every refusal is explained here
before the database's CHECKs, the guard, would see it.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import click

from common.errors import LedgerError

ACTOR = {"principal": "ledger:dormancy-cli", "role": "operator"}
MODELS = ("personal", "enterprise", "reseller")
ACTIONS = ("mark", "sweep", "breakage")
REACTIVATIONS = ("automatic", "operator", "delete")
_DAYS = re.compile(r"^(\d{1,5})d$")


def store() -> Any:
    """The policies as the operator's login sees them (the login is the environment's)."""
    from common import bootstrap
    from common.adapters.dormancy_policies import DormancyPolicies

    return DormancyPolicies(bootstrap.pool())


def days(value: str, name: str) -> int:
    match = _DAYS.match(value.strip())
    if match is None:
        raise click.BadParameter(f"{value!r} is not a number of days such as 365d", param_hint=name)
    return int(match.group(1))


@click.group()
def policy() -> None:
    """The dormancy policies per asset and wallet model."""


@policy.command("list")
def list_() -> None:
    """Every policy, as CSV."""
    from common.adapters.dormancy_policies import COLUMNS

    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_call(lambda: store().list()))
    click.echo(out.getvalue(), nl=False)


@policy.command("set")
@click.argument("asset")
@click.argument("model", type=click.Choice(MODELS))
@click.option("--inactivity", required=True, help="days since the last customer-initiated posting, e.g. 365d")
@click.option("--warning", default="0d", show_default=True, help="days before dormancy the warning goes out")
@click.option("--action", "action", required=True, type=click.Choice(ACTIONS), help="what happens at dormancy")
@click.option("--reactivation", default="automatic", show_default=True, type=click.Choice(REACTIVATIONS))
def set_(asset: str, model: str, inactivity: str, warning: str, action: str, reactivation: str) -> None:
    """Create or replace the policy of ASSET and MODEL."""
    inactivity_days, warning_days = days(inactivity, "--inactivity"), days(warning, "--warning")
    if inactivity_days < 1:
        raise click.BadParameter("the inactivity period is at least 1d", param_hint="--inactivity")
    if warning_days >= inactivity_days:
        raise click.BadParameter("the warning comes before dormancy: shorter than --inactivity", param_hint="--warning")
    if reactivation == "delete" and action == "mark":
        # a wallet closed for good must not keep a balance nobody can reach
        raise click.BadParameter("delete closes the wallet: its balance goes by sweep or breakage, not mark")
    policies = store()
    if asset not in _call(policies.assets):
        raise click.BadParameter(f"no asset {asset!r} in the ledger", param_hint="ASSET")
    _call(lambda: policies.set(asset, model, inactivity_days, warning_days, action, reactivation, ACTOR))
    click.echo(
        f"dormancy policy {asset} {model}: {inactivity_days}d, warning {warning_days}d, {action}, {reactivation}"
    )


def _call(work: Any) -> Any:
    from common.adapters.postgres import error_fields

    try:
        return work()
    except LedgerError as error:
        raise click.ClickException(f"{error.code}: {error.message}") from None
    except Exception as error:
        if error_fields(error).get("C") == "42501":  # insufficient_privilege
            raise click.ClickException("forbidden: dormancy policies are the operator login's to set") from None
        raise
