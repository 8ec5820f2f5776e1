"""`python -m db upgrade [--url URL]`: migrations and current definitions, one transaction.

The URL names the owner's login but carries no password: a password on a command line
is readable by every user of the machine (ps, /proc). It comes from the environment,
PGPASSWORD (as for psql), or LEDGER_MIGRATIONS_URL in full. In Google Cloud this is the
one place a password is used: the instance's admin user's, read from Secret Manager into
PGPASSWORD for the run (infra/terraform/README.md); every function logs in with IAM.
"""

import os

import click
from sqlalchemy.engine import make_url

from db.upgrade import upgrade as upgrade_database


@click.group()
def cli() -> None:
    pass


@cli.command()
@click.option("--url", envvar="LEDGER_MIGRATIONS_URL", required=True, help="postgresql+pg8000://owner@host:port/db")
@click.pass_context
def upgrade(ctx: click.Context, url: str) -> None:
    """Run the pending migrations and bring db/schema/'s definitions up to date."""
    given_on_command_line = ctx.get_parameter_source("url") == click.core.ParameterSource.COMMANDLINE
    if given_on_command_line and make_url(url).password is not None:
        raise click.UsageError("--url must not carry a password: set PGPASSWORD (or LEDGER_MIGRATIONS_URL) instead")
    rebuilt = upgrade_database(url, password=os.environ.get("PGPASSWORD"))
    click.echo("definitions re-created" if rebuilt else "definitions unchanged")


if __name__ == "__main__":
    cli()
