"""The first two operators of a fresh deployment (`python -m common.access_cli
bootstrap-operator`): registered as the database owner, audited; afterwards operators
add operators through the API, and a second one approves."""

import getpass
import json
import uuid

import pytest
from click.testing import CliRunner

from common.access_cli import main as cli
from emulators import database
from tests.support import sql


def database_url(dsn):
    return f"postgresql://{dsn['user']}:{dsn['password']}@{dsn['host']}:{dsn['port']}/{dsn['database']}"


@pytest.fixture(scope="module")
def fresh(stack):
    """A database of its own on the test cluster, migrated as a deployment's would be."""
    name = f"ledger_boot_{uuid.uuid4().hex[:8]}"
    stack.psql(f"CREATE DATABASE {name} OWNER ledger_owner")
    dsn = {**stack.owner_dsn(), "database": name}
    database.migrate(dsn)
    yield dsn
    stack.psql(f"DROP DATABASE {name} WITH (FORCE)")


def bootstrap(dsn, principal_id, issuer="https://accounts.google.com", subject="1234567890"):
    args = ["bootstrap-operator", principal_id, "--issuer", issuer, "--subject", subject, "--tenant", "ops"]
    result = CliRunner().invoke(cli, [*args, "--database-url", database_url(dsn)])
    return result.exit_code, result.output


def owner_sql(dsn, statement, **params):
    con = database.owner_connection(dsn)
    try:
        return con.run(statement, **params)
    finally:
        con.close()


def test_the_first_operator_is_registered_once_with_its_audit_rows(fresh):
    code, out = bootstrap(fresh, "first-ops")
    assert code == 0, out
    assert json.loads(out)["role"] == "operator"
    principal = owner_sql(
        fresh, "SELECT issuer, subject, kind, tenant, status FROM ledger.principals WHERE id = 'first-ops'"
    )
    assert principal == [["https://accounts.google.com", "1234567890", "operator", "ops", "active"]]
    grants = owner_sql(fresh, "SELECT role, boundary, status FROM ledger.grants WHERE principal_id = 'first-ops'")
    assert grants == [["operator", "all", "active"]]
    rows = owner_sql(
        fresh,
        "SELECT action, actor, before, reason FROM ledger.audit_log WHERE target = 'principal:first-ops' ORDER BY id",
    )
    assert [row[0] for row in rows] == ["principal.create", "grant.create"]
    assert all(row[1] == {"principal": f"bootstrap:{getpass.getuser()}"} and row[2] is None for row in rows)
    assert rows[0][3] == "bootstrap of the first operators"

    # a second, so that the first's later grants have someone to approve them; then no more
    assert bootstrap(fresh, "second-ops", subject="2234567890")[0] == 0
    code, out = bootstrap(fresh, "third-ops", subject="3234567890")
    assert code == 1 and "operators_exist" in out and "first-ops" in out and "second-ops" in out
    assert owner_sql(fresh, "SELECT count(*) FROM ledger.principals")[0][0] == 2


def test_a_deployment_with_two_operators_refuses_a_bootstrap(stack):
    from tests.support import principal

    principal(stack, "access-ops", "operator", kind="operator", tenant="ops")
    principal(stack, "access-ops-2", "operator", kind="operator", tenant="ops")
    before = sql(stack, "SELECT count(*) FROM ledger.audit_log")[0][0]
    code, out = bootstrap(stack.owner_dsn(), f"boot-{uuid.uuid4().hex[:8]}")
    assert code == 1 and "operators_exist" in out
    assert sql(stack, "SELECT count(*) FROM ledger.audit_log")[0][0] == before
