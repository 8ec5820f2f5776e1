"""`python -m db upgrade [--url URL]`: migrations and current definitions, one transaction."""

import click

from db.upgrade import upgrade as upgrade_database


@click.group()
def cli() -> None:
    pass


@cli.command()
@click.option("--url", envvar="LEDGER_MIGRATIONS_URL", required=True, help="postgresql+pg8000://owner:...@host/db")
def upgrade(url: str) -> None:
    """Run the pending migrations and bring db/schema/'s definitions up to date."""
    rebuilt = upgrade_database(url)
    click.echo("definitions re-created" if rebuilt else "definitions unchanged")


if __name__ == "__main__":
    cli()
