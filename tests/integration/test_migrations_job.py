"""The migrations job's steps after upgrading (db/logins.py, `python -m db upgrade`): each
function login's IAM user is granted its role and search_path once, and a second run
changes nothing; the audit role gets the writes on the ledger's tables."""

import json
import secrets

import pg8000.native
import pytest
from click.testing import CliRunner

from db import connect, logins
from db.__main__ import cli as db_cli
from emulators.database import migrate, owner_url


def owner(stack):
    return pg8000.native.Connection(**stack.owner_dsn())


@pytest.fixture
def iam_users(stack):
    """Two logins named as Cloud SQL names IAM users ("<account>@<project>.iam"), dropped after."""
    users = [f"ledger-{secrets.token_hex(4)}@p.iam" for _ in range(2)]
    con = owner(stack)
    for user in users:
        con.run(f'CREATE ROLE "{user}" LOGIN')
    yield users
    for user in users:
        con.run(f'DROP ROLE "{user}"')
    con.close()


def memberships(stack, user):
    con = owner(stack)
    try:
        roles = con.run(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
            " JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = :u ORDER BY 1",
            u=user,
        )
        setting = con.run(
            "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles u ON u.oid = s.setrole WHERE u.rolname = :u",
            u=user,
        )
    finally:
        con.close()
    return [row[0] for row in roles], setting[0][0] if setting else None


def run_upgrade(stack, login_roles):
    url = owner_url(stack.owner_dsn())
    environment = {
        "LEDGER_MIGRATIONS_URL": url.set(password=None).render_as_string(hide_password=False),
        "PGPASSWORD": stack.owner_dsn()["password"],
        "LEDGER_DB_LOGIN_ROLES": json.dumps(login_roles),
    }
    result = CliRunner().invoke(db_cli, ["upgrade"], env=environment)
    assert result.exit_code == 0, result.output
    return result.output


def test_each_iam_user_gets_its_role_once(stack, iam_users):
    poster, relay = iam_users
    first = run_upgrade(stack, {poster: "ledger_poster", relay: "ledger_relay"})
    assert memberships(stack, poster) == (["ledger_poster"], ["search_path=ledger"])
    assert memberships(stack, relay) == (["ledger_relay"], ["search_path=ledger"])
    assert "4 changes" in first

    second = run_upgrade(stack, {poster: "ledger_poster", relay: "ledger_relay"})
    assert "0 changes" in second
    assert memberships(stack, poster) == (["ledger_poster"], ["search_path=ledger"])


def test_a_login_moved_to_another_role_keeps_only_the_new_one(stack, iam_users):
    login, _ = iam_users
    run_upgrade(stack, {login: "ledger_poster"})
    moved = run_upgrade(stack, {login: "ledger_relay"})
    assert f"revoked ledger_poster from {login}" in moved
    assert memberships(stack, login) == (["ledger_relay"], ["search_path=ledger"])
    assert "0 changes" in run_upgrade(stack, {login: "ledger_relay"})


@pytest.mark.parametrize("role", ["ledger_owner", "pg_read_all_data", logins.AUDIT_ROLE])
def test_a_login_mapped_to_a_role_that_is_not_a_functions_is_refused(stack, iam_users, role):
    login, other = iam_users
    engine = connect.engine(owner_url(stack.owner_dsn()), None)
    try:
        with pytest.raises(ValueError, match="only to a function role"), engine.begin() as connection:
            logins.grant_login_roles(connection, {other: "ledger_poster", login: role})
    finally:
        engine.dispose()
    assert memberships(stack, login) == ([], None) and memberships(stack, other) == ([], None)


def test_every_function_role_is_defined_by_the_schema_and_cannot_log_in(stack):
    con = owner(stack)
    try:
        rows = con.run(
            "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(:r)", r=sorted(logins.FUNCTION_ROLES)
        )
    finally:
        con.close()
    assert sorted(rows) == sorted([name, False] for name in logins.FUNCTION_ROLES)


def test_a_missing_iam_user_stops_the_job(stack):
    engine = connect.engine(owner_url(stack.owner_dsn()), None)
    with pytest.raises(LookupError, match="google_sql_user"), engine.begin() as connection:
        logins.grant_login_roles(connection, {"nobody@p.iam": "ledger_poster"})
    engine.dispose()


def test_the_audit_role_holds_the_writes_on_every_ledger_table(stack):
    engine = connect.engine(owner_url(stack.owner_dsn()), None)
    try:
        with engine.begin() as connection:
            assert logins.enable_audit(connection, with_extension=False) == [f"created role {logins.AUDIT_ROLE}"]
            assert logins.enable_audit(connection, with_extension=False) == []
        con = owner(stack)
        missing = con.run(
            "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relkind IN ('r', 'p')"
            " AND c.relnamespace::regnamespace::text IN ('ledger', 'erp')"
            " AND NOT has_table_privilege(:r, c.oid, 'INSERT, UPDATE, DELETE')",
            r=logins.AUDIT_ROLE,
        )
        con.close()
        assert missing == []
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA ledger, erp FROM {logins.AUDIT_ROLE}")
            connection.exec_driver_sql(f"DROP ROLE {logins.AUDIT_ROLE}")
        engine.dispose()


def test_without_an_instance_or_url_the_command_says_what_to_set(monkeypatch):
    monkeypatch.delenv("LEDGER_MIGRATIONS_URL", raising=False)
    monkeypatch.delenv("LEDGER_DB_INSTANCE", raising=False)
    result = CliRunner().invoke(db_cli, ["upgrade"])
    assert result.exit_code == 2 and "LEDGER_DB_INSTANCE" in result.output


@pytest.fixture(scope="module")
def fresh(stack):
    """A database of its own, migrated as a deployment's would be: no operators yet."""
    name = f"ledger_job_{secrets.token_hex(4)}"
    stack.psql(f"CREATE DATABASE {name} OWNER ledger_owner")
    dsn = {**stack.owner_dsn(), "database": name}
    migrate(dsn)
    yield dsn
    stack.psql(f"DROP DATABASE {name} WITH (FORCE)")


def bootstrap(dsn, principal_id):
    environment = {
        "LEDGER_MIGRATIONS_URL": owner_url(dsn).set(password=None).render_as_string(hide_password=False),
        "PGPASSWORD": dsn["password"],
    }
    args = ["bootstrap-operator", principal_id, "--issuer", "https://accounts.google.com", "--subject", principal_id]
    return CliRunner().invoke(db_cli, [*args, "--tenant", "ops"], env=environment)


def test_the_job_registers_the_first_two_operators_and_no_third(fresh):
    for principal_id in ("alex", "sam"):
        result = bootstrap(fresh, principal_id)
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["principal"] == principal_id
    refused = bootstrap(fresh, "third")
    assert refused.exit_code == 1 and "operators_exist" in refused.output


def test_a_role_that_others_are_members_of_is_refused_as_the_audit_role(stack):
    engine = connect.engine(owner_url(stack.owner_dsn()), None)
    try:
        with pytest.raises(ValueError, match="has members"), engine.begin() as connection:
            logins.enable_audit(connection, with_extension=False, role="ledger_auditor")
    finally:
        engine.dispose()


def test_an_older_release_leaves_a_newer_schema_as_it_is(stack):
    """A rollback deploys the previous commit, whose migrations job finds the database at a
    revision it has never heard of: it changes nothing and succeeds, so the deploy goes on
    to put the older functions back (docs/deploy.md, "Rolling back a release")."""
    con = owner(stack)
    [[current]] = con.run("SELECT version_num FROM public.alembic_version")
    con.run("UPDATE public.alembic_version SET version_num = '9999_from_a_later_release'")
    try:
        output = run_upgrade(stack, {})
        assert "ahead of this release (at 9999_from_a_later_release): nothing changed" in output
        assert con.run("SELECT version_num FROM public.alembic_version") == [["9999_from_a_later_release"]]
    finally:
        con.run("UPDATE public.alembic_version SET version_num = :v", v=current)
        con.close()


def test_the_schema_owner_is_no_functions_login(stack):
    me = owner(stack)
    try:
        [[owner_name]] = me.run("SELECT current_user")
    finally:
        me.close()
    before = memberships(stack, owner_name)
    url = owner_url(stack.owner_dsn())
    environment = {
        "LEDGER_MIGRATIONS_URL": url.set(password=None).render_as_string(hide_password=False),
        "PGPASSWORD": stack.owner_dsn()["password"],
        "LEDGER_DB_LOGIN_ROLES": json.dumps({owner_name: "ledger_poster"}),
    }
    result = CliRunner().invoke(db_cli, ["upgrade"], env=environment)
    assert result.exit_code != 0 and "runs the migrations" in str(result.exception or result.output)
    assert memberships(stack, owner_name) == before
