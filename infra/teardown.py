"""`python -m infra.teardown ENV` (make teardown ENV=dev): everything `make deploy`
created, gone, the state bucket aside. It deletes the ledger's data: it asks for the
project's id first, and --dry-run prints the commands only.

Cloud SQL and Firestore are protected from deletion twice over (Terraform's
deletion_protection, which fails any plan that would destroy the instance, and the API's
own deletion protection), so they are deleted here with gcloud first, protections off,
and forgotten by Terraform; then terraform destroy removes the rest. Firestore's
database is abandoned, not deleted, by a destroy (the provider's default deletion
policy): it is deleted last, by gcloud.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from infra.deploy import TERRAFORM_DIR, Environment, Step, load_environment, run

FIRESTORE_DATABASE = "(default)"
# What goes with the Cloud SQL instance, and so leaves Terraform's state with it.
SQL_STATE = (
    "google_sql_database_instance.ledger",
    "google_sql_database.ledger",
    "google_sql_user.database_login",
    "google_sql_user.migrator",
)


def plan(env: Environment, auto_approve: bool = False) -> list[Step]:
    p = ["--project", env.project]
    instance = f"{env.prefix}-pg"
    approve = ["-auto-approve"] if auto_approve else []
    return [
        Step(
            "terraform init",
            [["terraform", "init", "-reconfigure", f"-backend-config={env.backend}"]],
            cwd=TERRAFORM_DIR,
        ),  # fmt: skip
        Step(
            f"Cloud SQL {instance}: protection off, deleted, out of Terraform's state",
            [
                ["gcloud", "sql", "instances", "patch", instance, *p, "--no-deletion-protection", "--quiet"],
                ["gcloud", "sql", "instances", "delete", instance, *p, "--quiet"],
                [
                    "sh",
                    "-c",
                    "terraform state list | grep -E '^("
                    + "|".join(s.replace(".", "\\.") for s in SQL_STATE)
                    + r")(\[|$)' | xargs -r terraform state rm",
                ],
            ],
            cwd=TERRAFORM_DIR,
        ),  # fmt: skip
        Step(
            f"Firestore {FIRESTORE_DATABASE}: protection off",
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
            ],
        ),  # fmt: skip
        Step("terraform destroy", [["terraform", "destroy", f"-var-file={env.tfvars}", *approve]], cwd=TERRAFORM_DIR),
        Step(
            f"Firestore {FIRESTORE_DATABASE}: deleted",
            [
                ["gcloud", "firestore", "databases", "delete", f"--database={FIRESTORE_DATABASE}", *p, "--quiet"],
            ],
        ),  # fmt: skip
    ]


@click.command()
@click.argument("env_name", metavar="ENV")
@click.option("--dry-run", is_flag=True, help="Print every command; run none.")
@click.option("--yes", is_flag=True, help="Destroy without Terraform's confirmation (the project id is still asked).")
def main(env_name: str, dry_run: bool, yes: bool) -> None:
    """Delete the environment ENV: its database and every resource Terraform made."""
    env = load_environment(env_name)
    if not dry_run:
        typed = click.prompt(f"This deletes the ledger's data in {env.project}. Type the project's id to go on")
        if typed != env.project:
            raise click.ClickException("not the project's id: nothing done")
    with tempfile.TemporaryDirectory() as unused:
        run(plan(env, auto_approve=yes), dry_run, Path(unused))


if __name__ == "__main__":
    main()
