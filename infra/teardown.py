"""`python -m infra.teardown ENV` (make teardown ENV=dev): everything `make deploy`
created, gone, the state bucket aside. It deletes the ledger's data: it asks for the
project's id first, ENV=prod also needs --i-understand-this-deletes-production and
takes a final backup of the database, and --dry-run prints the commands only.

Cloud SQL and Firestore are protected from deletion twice over (Terraform's
deletion_protection, which fails any plan that would destroy the instance, and the API's
own deletion protection), so they are deleted here with gcloud first, protections off,
and forgotten by Terraform; then terraform destroy removes the rest. Each step runs only
if what it removes still exists, so a teardown that stopped halfway is run again.
Firestore's database is deleted only if this deployment's Terraform state holds it: a
project's (default) database that Terraform did not create is not the teardown's.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path

import click

from infra.deploy import BUNDLE_DIR, TERRAFORM_DIR, Environment, Step, load_environment, run, terraform_init

FIRESTORE_DATABASE = "(default)"
FIRESTORE_STATE = "google_firestore_database.ledger"
# What goes with the Cloud SQL instance, and so leaves Terraform's state with it. An
# address without an index ("google_sql_user.database_login") removes every instance.
SQL_STATE = (
    "google_sql_database_instance.read_replica",
    "google_sql_database_instance.ledger",
    "google_sql_database.ledger",
    "google_sql_user.database_login",
    "google_sql_user.migrator",
    "google_sql_user.operators",
)
PRODUCTION_FLAG = "--i-understand-this-deletes-production"
# How long production's final backup is kept: the longest Cloud SQL allows.
FINAL_BACKUP_RETENTION_DAYS = 365


def _in_state(address: str) -> list[str]:
    # `terraform state list ADDRESS` prints the address's instances, nothing if none
    return ["sh", "-c", f'test -n "$(terraform state list {shlex.quote(address)})"']


def plan(env: Environment, auto_approve: bool = False) -> list[Step]:
    p = ["--project", env.project]
    instance = f"{env.prefix}-pg"
    replica = f"{instance}-replica"  # database.tf's read replica, where there is one
    approve = ["-auto-approve"] if auto_approve else []
    final_backup = (
        ["--enable-final-backup", f"--final-backup-retention-days={FINAL_BACKUP_RETENTION_DAYS}"]
        if env.production
        else []
    )
    steps = [
        terraform_init(env),
        # a primary that has a replica can't be deleted: the replica goes first (it holds
        # nothing of its own, so no protection and no final backup)
        Step(
            f"Cloud SQL {replica}, the read replica: deleted",
            [["gcloud", "sql", "instances", "delete", replica, *p, "--quiet"]],
            when=["gcloud", "sql", "instances", "describe", replica, *p, "--format=value(name)"],
        ),
        Step(
            f"Cloud SQL {instance}: protection off, deleted"
            + (f" after a final backup kept {FINAL_BACKUP_RETENTION_DAYS} days" if final_backup else ""),
            [
                ["gcloud", "sql", "instances", "patch", instance, *p, "--no-deletion-protection", "--quiet"],
                ["gcloud", "sql", "instances", "delete", instance, *p, *final_backup, "--quiet"],
            ],
            when=["gcloud", "sql", "instances", "describe", instance, *p, "--format=value(name)"],
        ),  # fmt: skip
    ]
    for address in SQL_STATE:
        steps.append(
            Step(
                f"{address}: out of Terraform's state",
                [["terraform", "state", "rm", address]],
                when=_in_state(address),
                cwd=TERRAFORM_DIR,
            )
        )
    steps += [
        Step(
            f"Firestore {FIRESTORE_DATABASE}, Terraform's: protection off, deleted",
            [
                [
                    "gcloud",
                    "firestore",
                    "databases",
                    "update",
                    f"--database={FIRESTORE_DATABASE}",
                    *p,
                    "--no-delete-protection",
                ],
                ["gcloud", "firestore", "databases", "delete", f"--database={FIRESTORE_DATABASE}", *p, "--quiet"],
            ],
            when=[
                "sh",
                "-c",
                f'test -n "$(terraform state list {FIRESTORE_STATE})" && '
                + shlex.join(
                    [
                        "gcloud",
                        "firestore",
                        "databases",
                        "describe",
                        f"--database={FIRESTORE_DATABASE}",
                        *p,
                        "--format=value(name)",
                    ]
                ),
            ],
            cwd=TERRAFORM_DIR,
        ),  # fmt: skip
        # Terraform evaluates every bundle's filemd5 even to destroy: a fresh checkout has none
        Step("the functions' bundles", [[sys.executable, "-m", "infra.bundle", "--all", str(BUNDLE_DIR)]]),
        # what refers to the database (its TTL fields) is refreshed away as gone
        Step("terraform destroy", [["terraform", "destroy", f"-var-file={env.tfvars}", *approve]], cwd=TERRAFORM_DIR),
    ]
    return steps


@click.command()
@click.argument("env_name", metavar="ENV")
@click.option("--dry-run", is_flag=True, help="Print every command; run none.")
@click.option("--yes", is_flag=True, help="Destroy without Terraform's confirmation (the project id is still asked).")
@click.option(
    "i_understand",
    PRODUCTION_FLAG,
    is_flag=True,
    help="Required to tear down production: ENV=prod or a REGIONAL database.",
)
def main(env_name: str, dry_run: bool, yes: bool, i_understand: bool) -> None:
    """Delete the environment ENV: its database and every resource Terraform made."""
    env = load_environment(env_name)
    if env.production and not (i_understand or dry_run):
        raise click.ClickException(
            f"ENV={env.name} is production (named prod, or a REGIONAL database): add {PRODUCTION_FLAG} to delete it;"
            " nothing done"
        )
    if not dry_run:
        typed = click.prompt(f"This deletes the ledger's data in {env.project}. Type the project's id to go on")
        if typed != env.project:
            raise click.ClickException("not the project's id: nothing done")
    with tempfile.TemporaryDirectory() as unused:
        run(plan(env, auto_approve=yes), dry_run, Path(unused))


if __name__ == "__main__":
    main()
