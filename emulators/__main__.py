"""`python -m emulators check|up|down|status|env|run`: the local stack's command line."""

from __future__ import annotations

import os

import click

from emulators import database
from emulators.prerequisites import PrerequisitesMissing
from emulators.stack import PROJECT, Stack, StackError

INSTALL = click.option(
    "--install/--no-install", default=True, show_default=True, help="Install missing Debian packages with apt-get."
)


class _StackCommands(click.Group):
    """A stack that cannot start says why in a message, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (StackError, PrerequisitesMissing) as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=_StackCommands)
@click.option("--profile", default="dev", show_default=True, help="dev (make dev) or test (the test suite).")
@click.pass_context
def cli(ctx: click.Context, profile: str) -> None:
    ctx.obj = Stack(profile=profile)


@cli.command()
@INSTALL
@click.pass_obj
def check(stack: Stack, install: bool) -> None:
    """Check (and install what apt-get can) everything the stack needs; start nothing."""
    stack.check_prerequisites(install)
    click.echo(f"Local stack '{stack.profile}' has what it needs (PostgreSQL in {stack.pg_bin}).")


@cli.command()
@click.option("--demo/--no-demo", default=True, show_default=True, help="Seed demo assets and wallets.")
@INSTALL
@click.pass_obj
def up(stack: Stack, demo: bool, install: bool) -> None:
    """Start every service, migrate, seed and serve every function; return when all answer."""
    stack.up(install=install)
    if demo:
        wallets = database.seed_demo(stack.owner_dsn())
        click.echo("\nDemo wallets:")
        for wallet in wallets:
            click.echo(
                f"  #{wallet['id']:<4} {wallet['owner_id']:<18} {wallet['asset']:<5} "
                f"{wallet['model']:<11} balance {wallet['balance']}"
            )
        registered = set(database.seed_principals(stack.owner_dsn(), stack.issuer))
        click.echo("\nDemo callers, each with a ready token (12 hours) to paste into your shell:")
        for principal_id, _kind, _tenant, _owner, role, boundary, _root in database.DEMO_PRINCIPALS:
            if principal_id not in registered:
                continue
            click.echo(f"  # {principal_id}: {role} ({boundary})")
            token = stack.token(principal_id, lifetime_s=43200)
            click.echo(f"  export {token_variable(principal_id)}={token}")
        click.echo('  # or all at once: eval "$(make -s tokens)"; another principal: make token P=NAME')
        topics = database.seed_topic_principals(stack.owner_dsn(), PROJECT)
        click.echo("\nTopics whose messages post balance actions (docs/messages.md), each a principal:")
        for topic in topics:
            click.echo(f"  {topic}")
    click.echo(f"\nLocal stack '{stack.profile}' is up (data in {stack.state_dir}):")
    for name, where in stack.describe():
        click.echo(f"  {name:<22} {where}")
    click.echo("\nStop it with: make down")


@cli.command()
@click.pass_obj
def down(stack: Stack) -> None:
    """Stop everything the stack started, emulator JVMs included."""
    stack.down()
    click.echo(f"Local stack '{stack.profile}' stopped.")


@cli.command()
@click.pass_obj
def status(stack: Stack) -> None:
    """Print where each service listens."""
    for name, where in stack.describe():
        click.echo(f"{name:<22} {where}")


def token_variable(principal_id: str) -> str:
    return "TOKEN_" + principal_id.upper().replace("-", "_")


@cli.command()
@click.option("--lifetime", default=43200, show_default=True, help="Seconds until the tokens expire.")
@click.pass_obj
def tokens(stack: Stack, lifetime: int) -> None:
    """Print `export TOKEN_<NAME>=...` for every demo caller, for a shell to eval."""
    for principal_id, *_ in database.DEMO_PRINCIPALS:
        click.echo(f"export {token_variable(principal_id)}={stack.token(principal_id, lifetime_s=lifetime)}")


@cli.command()
@click.argument("subject")
@click.option("--lifetime", default=3600, show_default=True, help="Seconds until the token expires.")
@click.option("--audience", default=None, help="Another audience than the local functions' (to see a 401).")
@click.pass_obj
def token(stack: Stack, subject: str, lifetime: int, audience: str | None) -> None:
    """Mint a token from the stack's local issuer for SUBJECT (a principal's subject; for
    the demo callers, their id: alice, acme-admin, payments, ops, ...)."""
    extra = {} if audience is None else {"audience": audience}
    click.echo(stack.token(subject, lifetime_s=lifetime, **extra))


@cli.command()
@click.option("--operator", is_flag=True, help="with the operator's database login (make ops)")
@click.option("--in-process", is_flag=True, help="with the in-process service's database login (tests, benchmarks)")
@click.pass_obj
def env(stack: Stack, operator: bool, in_process: bool) -> None:
    """Print the environment that points common/ at this stack (KEY=VALUE lines). With a
    login, its password too: for a file or a shell's eval, not a command line (use `run`)."""
    chosen = stack.operator_env() if operator else stack.in_process_env() if in_process else stack.env()
    for key, value in chosen.items():
        click.echo(f"{key}={value}")


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--operator", is_flag=True, help="with the operator's database login (make ops, make reconcile)")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def run(stack: Stack, operator: bool, command: tuple[str, ...]) -> None:
    """Run COMMAND with the environment that points common/ at this stack: the database
    password goes by environment, never on a command line."""
    environment = {**os.environ, **(stack.operator_env() if operator else stack.in_process_env())}
    os.execvpe(command[0], list(command), environment)


if __name__ == "__main__":
    cli()
