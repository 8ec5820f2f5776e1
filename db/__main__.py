"""`python -m db upgrade|bootstrap-operator`: the schema's owner's commands.

upgrade: the migrations and current definitions, in one transaction; then, when given,
each function login's IAM user its database role (LEDGER_DB_LOGIN_ROLES, JSON
{iam_user: role}) and, on Cloud SQL (--cloud-sql), pgaudit's audit of the ledger's
tables (db/logins.py). bootstrap-operator: one of the first two operators of a fresh
deployment (docs/callers-and-grants.md), which only the owner may register.

Where: locally, a URL that names the owner's login but carries no password (a password
on a command line is readable by every user of the machine: ps, /proc); it comes from
PGPASSWORD (as for psql), or LEDGER_MIGRATIONS_URL in full. In Google Cloud, the
migrations job (infra/terraform/jobs.tf) sets LEDGER_DB_INSTANCE and logs in as its own
IAM database user, the schema's owner, without any password (db/connect.py).
"""

import getpass
import json
import os

import click
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from common.config import Settings
from db import connect, logins
from db.upgrade import SchemaAhead
from db.upgrade import upgrade as upgrade_database

URL_OPTION = click.option(
    "--url", envvar="LEDGER_MIGRATIONS_URL", default=None, help="postgresql+pg8000://owner@host:port/db"
)


@click.group()
def cli() -> None:
    pass


def _target(ctx: click.Context, url: str | None) -> tuple:
    given_on_command_line = ctx.get_parameter_source("url") == click.core.ParameterSource.COMMANDLINE
    if given_on_command_line and url and make_url(url).password is not None:
        raise click.UsageError("--url must not carry a password: set PGPASSWORD (or LEDGER_MIGRATIONS_URL) instead")
    try:
        return connect.target(url, os.environ.get("PGPASSWORD"), Settings.from_env())
    except ValueError as error:
        raise click.UsageError(str(error)) from None


def _login_roles(raw: str | None) -> dict[str, str]:
    try:
        mapping = json.loads(raw) if raw else {}
    except ValueError:
        raise click.BadParameter("not JSON", param_hint="LEDGER_DB_LOGIN_ROLES") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise click.BadParameter('expected {"iam_user": "role", ...}', param_hint="LEDGER_DB_LOGIN_ROLES")
    return mapping


@cli.command()
@URL_OPTION
@click.option("--login-roles", envvar="LEDGER_DB_LOGIN_ROLES", default=None, help='JSON {"iam_user": "role"}')
@click.option("--cloud-sql", envvar="LEDGER_DB_CLOUD_SQL", is_flag=True, help="Also set up pgaudit (Cloud SQL).")
@click.option("--audit-role", envvar="LEDGER_DB_AUDIT_ROLE", default=logins.AUDIT_ROLE, show_default=True,
              help="pgaudit.role: the role whose privileges pgaudit logs.")  # fmt: skip
@click.pass_context
def upgrade(ctx: click.Context, url: str | None, login_roles: str | None, cloud_sql: bool, audit_role: str) -> None:
    """Run the pending migrations and bring db/schema/'s definitions up to date; then
    grant the logins their roles and, on Cloud SQL, audit the ledger's tables."""
    engine_url, creator = _target(ctx, url)
    mapping = _login_roles(login_roles)
    try:
        rebuilt = upgrade_database(engine_url, creator=creator)
    except SchemaAhead as ahead:
        # a rollback's deploy (docs/deploy.md): the older code runs on the newer schema,
        # whose migrations were additive; its grants and audit stay as the newer run left them
        click.echo(str(ahead))
        return
    click.echo("definitions re-created" if rebuilt else "definitions unchanged")
    if not (mapping or cloud_sql):
        return
    engine = connect.engine(engine_url, creator)
    try:
        with engine.begin() as connection:
            changes = logins.grant_login_roles(connection, mapping)
            if cloud_sql:
                changes += logins.enable_audit(connection, with_extension=True, role=audit_role)
    finally:
        engine.dispose()
    for change in changes:
        click.echo(change)
    click.echo(f"{len(mapping)} logins checked, {len(changes)} changes")


class _Runner:
    """A SQLAlchemy connection with pg8000.native's run(), for common.access_cli."""

    def __init__(self, connection) -> None:
        self._connection = connection

    def run(self, sql: str, **params):
        return self._connection.execute(text(sql), params).all()


@cli.command("bootstrap-operator")
@URL_OPTION
@click.argument("principal_id")
@click.option("--issuer", required=True, help="The token's iss: https://accounts.google.com for a Google account.")
@click.option("--subject", required=True, help="The token's sub: the account's unique ID.")
@click.option("--tenant", required=True)
@click.pass_context
def bootstrap_operator(ctx: click.Context, url: str | None, principal_id: str, issuer: str, subject: str,
                       tenant: str) -> None:  # fmt: skip
    """Register one of the first two operators, as the schema's owner (run it twice)."""
    from common.access_cli import bootstrap_operator as register
    from common.errors import DATABASE_REFUSALS

    engine = connect.engine(*_target(ctx, url))
    try:
        with engine.begin() as connection:
            actor = f"bootstrap:{getpass.getuser()}"
            grant_id = register(_Runner(connection), principal_id, issuer, subject, tenant, actor)
    except DBAPIError as error:
        fields = error.orig.args[0] if error.orig.args and isinstance(error.orig.args[0], dict) else {}
        if fields.get("M") in DATABASE_REFUSALS:  # operators_exist: a refusal, said plainly
            raise click.ClickException(f"{fields['M']}: {fields.get('D')}") from None
        raise
    finally:
        engine.dispose()
    click.echo(json.dumps({"principal": principal_id, "role": "operator", "boundary": "all", "grant_id": grant_id}))


if __name__ == "__main__":
    cli()
