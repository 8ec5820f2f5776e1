"""`python -m common.dormancy` as the operator runs it (click's CliRunner, against the
real test stack): a run twice is a run once, its CSV reports, an operator's
reactivation, and the policies set and listed by the operator's login alone, with
their refusals (docs/dormancy.md)."""

import csv
import io
import json

import pytest
from click.testing import CliRunner

from common import bootstrap, dormancy_policy
from common.adapters.dormancy_policies import DormancyPolicies
from common.dormancy import main
from tests.integration.test_dormancy import idle, status, wallet
from tests.integration.test_dormancy_traced import add_on
from tests.support import balance, ensure_asset, login_pool, sql

ASSET = "DRMCLI"  # sweep, reactivated by an operator
POLICY_ASSET = "DRMPOL"  # the policy tests' own


@pytest.fixture(scope="module", autouse=True)
def assets(stack):
    ensure_asset(stack, ASSET)
    ensure_asset(stack, POLICY_ASSET)
    sql(
        stack,
        "INSERT INTO ledger.dormancy_policies (asset_code, model, inactivity, warning, action, reactivation)"
        " VALUES (:a, 'personal', interval '365 days', interval '30 days', 'sweep', 'operator')"
        " ON CONFLICT DO NOTHING",
        a=ASSET,
    )


@pytest.fixture
def service(stack):
    return bootstrap.service()


@pytest.fixture
def as_operator(stack, monkeypatch):
    """The policy commands on the operator's own login, as `make ops` runs them."""
    pool = login_pool(stack, *stack.login("operator"))
    monkeypatch.setattr(dormancy_policy, "store", lambda: DormancyPolicies(pool))


def cli(*args):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_a_run_twice_through_the_cli_is_a_run_once_and_reports_per_product(stack, service, tmp_path):
    wallet_id = wallet(service, ASSET, funded=50)
    add_on(service, wallet_id, ASSET, 30, "gpu")
    idle(stack, [wallet_id], 400)
    transactions = sql(stack, "SELECT count(*) FROM ledger.transactions")[0][0]

    first = cli("run", "--csv", tmp_path / "first.csv", "--products-csv", tmp_path / "products.csv")

    assert first.exit_code == 0, first.output
    (mine,) = [r for r in rows((tmp_path / "first.csv").read_text()) if r["asset"] == ASSET]
    assert (mine["model"], mine["swept"], mine["swept_amount"], mine["failed"]) == ("personal", "1", "80", "0")
    products = {r["product"]: r for r in rows((tmp_path / "products.csv").read_text()) if r["asset"] == ASSET}
    assert {p: (r["postings"], r["swept_amount"]) for p, r in products.items()} == {"gpu": ("1", "30"), "": ("1", "50")}
    assert sql(stack, "SELECT count(*) FROM ledger.transactions")[0][0] == transactions + 2

    second = cli("run")

    assert second.exit_code == 0, second.output
    (again,) = [r for r in rows(second.stdout) if r["asset"] == ASSET] or [{"swept": "0"}]
    assert again["swept"] == "0"
    assert sql(stack, "SELECT count(*) FROM ledger.transactions")[0][0] == transactions + 2
    assert (balance(stack, wallet_id), status(stack, wallet_id)) == (0, "dormant")
    report = {r["asset"]: r for r in rows(cli("report").stdout)}
    assert report[ASSET]["swept_outstanding"] == "80"

    reactivated = cli("reactivate", wallet_id)

    assert reactivated.exit_code == 0, reactivated.output
    assert json.loads(reactivated.stdout)["reactivation_transaction_id"] is not None
    assert (balance(stack, wallet_id), status(stack, wallet_id)) == (80, "active")
    assert json.loads(cli("reactivate", wallet_id).stdout)["reactivation_transaction_id"] is None
    missing = cli("reactivate", 10**12)
    assert missing.exit_code == 1 and "wallet_not_found" in missing.output


def test_the_operator_sets_and_lists_a_policy(stack, as_operator):
    result = cli("policy", "set", POLICY_ASSET, "enterprise", "--inactivity", "365d", "--warning", "30d",
                 "--action", "breakage", "--reactivation", "operator")  # fmt: skip
    assert result.exit_code == 0, result.output
    again = cli("policy", "set", POLICY_ASSET, "enterprise", "--inactivity", "180d", "--action", "sweep")
    assert again.exit_code == 0, again.output

    listed = {(r["asset"], r["model"]): r for r in rows(cli("policy", "list").stdout)}

    mine = listed[(POLICY_ASSET, "enterprise")]
    assert (mine["inactivity"], mine["warning"], mine["action"], mine["reactivation"]) == (
        "180d",
        "0d",
        "sweep",
        "automatic",
    )
    audited = sql(
        stack,
        "SELECT count(*) FROM ledger.audit_log WHERE action = 'dormancy.set_policy' AND target = :t",
        t=f"dormancy_policy:{POLICY_ASSET}:enterprise",
    )
    assert audited == [[2]]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--inactivity", "a year", "--action", "mark"], "not a number of days"),
        (["--inactivity", "30d", "--warning", "30d", "--action", "mark"], "shorter than --inactivity"),
        (["--inactivity", "30d", "--action", "mark", "--reactivation", "delete"], "not mark"),
        (["--inactivity", "30d", "--action", "forget"], "'forget' is not one of"),
        (["--inactivity", "0d", "--action", "sweep"], "at least 1d"),
    ],
)
def test_a_policy_the_cli_refuses_changes_nothing(stack, as_operator, args, says):
    result = cli("policy", "set", POLICY_ASSET, "reseller", *args)
    assert result.exit_code == 2 and says in result.output
    assert (POLICY_ASSET, "reseller") not in {(r["asset"], r["model"]) for r in rows(cli("policy", "list").stdout)}


def test_an_unknown_asset_is_refused(stack, as_operator):
    result = cli("policy", "set", "NOSUCHASSET", "personal", "--inactivity", "30d", "--action", "mark")
    assert result.exit_code == 2 and "no asset 'NOSUCHASSET'" in result.output


def test_only_the_operators_login_sets_a_policy(stack):
    # the functions' and the tests' in-process login (ledger_poster, ledger_jobs, ...) may not
    result = cli("policy", "set", POLICY_ASSET, "personal", "--inactivity", "30d", "--action", "mark")
    assert result.exit_code == 1 and "forbidden" in result.output
    assert sql(
        stack,
        "SELECT count(*) FROM ledger.dormancy_policies WHERE asset_code = :a AND model = 'personal'",
        a=POLICY_ASSET,
    ) == [[0]]
