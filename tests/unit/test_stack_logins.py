"""The local stack's database logins: one per kind of function (and the operator's), each
with a password drawn for that stack alone, kept in a 0600 file and passed by environment,
never on a command line."""

from __future__ import annotations

import stat
import subprocess

import pytest
from click.testing import CliRunner

from db.__main__ import cli as db_cli
from emulators import logins
from emulators.stack import FUNCTIONS, Stack
from infra.functions import DATABASE_LOGINS

# What the stack used to bake in, and must never hand out again.
OLD_PASSWORDS = {"ledger_owner", "ledger_fn", "ledger_erp", "ledger_access_fn", "postgres"}


def stack(tmp_path, name: str) -> Stack:
    return Stack("test", port_base=55900, state_dir=tmp_path / name)


def test_two_stacks_draw_different_passwords_and_keep_them_private(tmp_path):
    first, second = stack(tmp_path, "a"), stack(tmp_path, "b")
    users = [logins.OWNER, logins.SUPERUSER, *(login.user for login in logins.LOGINS.values())]
    for user in users:
        assert first.passwords[user] != second.passwords[user], user
        assert first.passwords[user] not in OLD_PASSWORDS
        assert first.passwords[user] == first.passwords[user]  # drawn once, then kept
    assert len({first.passwords[user] for user in users}) == len(users)
    assert stat.S_IMODE(first.passwords.path.stat().st_mode) == 0o600


def test_every_function_logs_in_as_its_own_kind_with_the_stacks_password(tmp_path):
    local = stack(tmp_path, "a")
    assert "LEDGER_DB_PASSWORD" not in local.env() and "LEDGER_DB_USER" not in local.env()
    for name, function in FUNCTIONS.items():
        env = local.function_env(name)
        login = logins.LOGINS[function.database_login]
        assert login.roles == (DATABASE_LOGINS[function.database_login],)
        assert (env["LEDGER_DB_USER"], env["LEDGER_DB_PASSWORD"]) == (login.user, local.passwords[login.user])
    operator = local.operator_env()
    assert operator["LEDGER_DB_USER"] == "ledger_operator_fn" != local.owner_dsn()["user"]


def test_the_sql_that_sets_passwords_goes_to_psql_on_its_standard_input(tmp_path, monkeypatch):
    local = stack(tmp_path, "a")
    calls = []

    def run(cmd, **kwargs):
        calls.append((cmd, kwargs))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(Stack, "pg_bin", property(lambda self: tmp_path))
    local.psql(logins.ensure_sql(local.passwords))
    ((cmd, kwargs),) = calls
    secret = local.passwords[logins.OWNER]
    assert not any(secret in part for part in cmd)
    assert secret in kwargs["input"]


def test_the_migration_command_refuses_a_password_on_its_command_line():
    result = CliRunner().invoke(db_cli, ["upgrade", "--url", "postgresql+pg8000://owner:secret@127.0.0.1:1/ledger"])
    assert result.exit_code == 2 and "PGPASSWORD" in result.output


@pytest.mark.parametrize("password", ["it's", "a\\b"])
def test_a_password_is_quoted_in_the_sql(tmp_path, password):
    local = stack(tmp_path, "a")
    local.passwords._write({logins.OWNER: password})
    assert "PASSWORD " + "'" + password.replace("'", "''") + "'" in logins.ensure_sql(local.passwords)
