"""`python -m infra.deploy ENV` (make deploy ENV=dev): from an empty project to a working
ledger, or a release onto an existing one; the same steps both times, each idempotent.

 1. preflight: gcloud, terraform, a logged-in account, the project from envs/ENV.tfvars
 2. the Terraform state bucket (envs/ENV.gcs.tfbackend), created if absent
 3. terraform init against it
 4. stage 1: the APIs, the secrets, the image's repository and builder, and the
    log-based metrics (-target), which must exist minutes before the alert policies
    that filter on them (Monitoring answers 404 "Cannot find metric" until then)
 5. cursor-key gets a generated version unless it has one
 6. the operator's secrets have a version, or the command stops and prints the exact
    `gcloud secrets versions add`
 7. the functions' bundles (python -m infra.bundle --all)
 8. the migrations image, built by Cloud Build unless its content hash is already pushed
 9. terraform apply -target: the migrations job and the functions' database logins
    (and what they depend on), not the functions: no new code is live yet
10. the migrator's IAM user made a member of cloudsqlsuperuser (once; idempotent)
11. the migrations job, waited for (migrations, definitions, the logins' roles, pgaudit)
12. terraform apply, everything: the new functions, on the migrated schema
13. the smoke check (python -m infra.smoke), skipped with a message while its
    principal is not registered (docs/deploy.md, First run)

The old functions serve on the new schema between steps 11 and 12, which is why a
migration must be additive (docs/deploy.md, "Order"). The steps that race IAM's
propagation (a grant Terraform just made takes up to minutes to hold: steps 8, 9, 11,
12) are tried 3 times, 60 s apart. Each step prints what it runs; --dry-run prints the
commands and runs none (the checks of steps 2, 5, 6 and 8 are printed as the condition
of what follows). The steps are built as data (plan()), so a test reads them without
gcloud.
"""

from __future__ import annotations

import base64
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click

from infra.migrations import image

REPO = Path(__file__).resolve().parent.parent
TERRAFORM_DIR = REPO / "infra" / "terraform"
BUNDLE_DIR = TERRAFORM_DIR / ".build"
# What stage 1 applies: enough for the secrets' versions and the image's build.
STAGE_ONE_TARGETS = (
    "google_project_service.enabled",
    "google_storage_bucket.sources",
    "google_secret_manager_secret.cursor_key",
    "google_secret_manager_secret.erp_credential",
    "google_secret_manager_secret.payment_provider_token",
    "google_artifact_registry_repository.ledger",
    "google_service_account.migrations_builder",
    "google_artifact_registry_repository_iam_member.migrations_builder",
    "google_storage_bucket_iam_member.migrations_builder",
    "google_project_iam_member.migrations_builder_logs",
    "google_logging_metric.distribution",
    "google_logging_metric.counter",
)
# What the migrations job needs before the functions: -target brings each one's
# dependencies (the instance, the network, the accounts); the migrator's project roles
# and the logins' users are named as nothing the job reads refers to them.
MIGRATIONS_TARGETS = (
    "google_cloud_run_v2_job.migrations",
    "google_project_iam_member.migrator",
    "google_sql_user.migrator",
    "google_sql_user.database_login",
)
# A grant Terraform has just made can take minutes to reach every Google API: the steps
# that use one are tried this many times, this far apart.
IAM_TRIES = 3
IAM_RETRY_PAUSE_S = 60
# Secret -> what fills it: generated here, or the operator's to add.
GENERATED_SECRETS = ("cursor-key",)
OPERATOR_SECRETS = {
    "erp-credential": "the ERP's API credential",
    "payment-provider-token": "the payment provider's token for auto top-ups",
}


@dataclass(frozen=True)
class Environment:
    """What the commands need to know of one environment, from its files."""

    name: str
    project: str
    region: str
    prefix: str  # var.name
    state_bucket: str
    # production-shaped: named prod, or a high-availability database (variables.tf's
    # default, so an environment that doesn't say is treated as production)
    production: bool = False

    @property
    def tfvars(self) -> str:
        return f"envs/{self.name}.tfvars"

    @property
    def backend(self) -> str:
        return f"envs/{self.name}.gcs.tfbackend"

    @property
    def migrator(self) -> str:
        return f"ledger-migrator@{self.project}.iam"

    @property
    def builder(self) -> str:
        return f"ledger-migrations-builder@{self.project}.iam.gserviceaccount.com"

    @property
    def image(self) -> str:
        return f"{self.region}-docker.pkg.dev/{self.project}/{self.prefix}/migrations"


def _hcl(path: Path) -> dict:
    import hcl2
    from hcl2 import SerializationOptions

    options = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
    return hcl2.loads(path.read_text(), serialization_options=options)


def _variable_default(name: str) -> str:
    variables = _hcl(TERRAFORM_DIR / "variables.tf")["variable"]
    return next(block[name]["default"] for block in variables if name in block)


def load_environment(name: str, terraform_dir: Path = TERRAFORM_DIR) -> Environment:
    tfvars_path = terraform_dir / "envs" / f"{name}.tfvars"
    backend_path = terraform_dir / "envs" / f"{name}.gcs.tfbackend"
    for path in (tfvars_path, backend_path):
        if not path.exists():
            raise click.ClickException(
                f"no {path.relative_to(terraform_dir)}: an environment is its tfvars and backend"
            )
    tfvars = _hcl(tfvars_path)
    availability = tfvars.get("db_availability") or _variable_default("db_availability")
    return Environment(
        name=name,
        project=tfvars["project_id"],
        region=tfvars.get("region") or _variable_default("region"),
        prefix=tfvars.get("name") or _variable_default("name"),
        state_bucket=_hcl(backend_path)["bucket"],
        production=name == "prod" or availability == "REGIONAL",
    )


@dataclass
class Step:
    """One step: its title, the commands it runs in order, and, for a conditional step,
    a check command: the commands run only if the check fails (exits non-zero). An
    action is Python run instead, its commands the checks it makes."""

    title: str
    commands: list[list[str]] = field(default_factory=list)
    unless: list[str] | None = None
    when: list[str] | None = None  # the commands run only if this check succeeds
    cwd: Path = REPO
    stdin: Callable[[], str] | None = None  # what the first command reads, made when run
    action: Callable[[], None] | None = None  # Python to run instead of commands
    tries: int = 1  # IAM_TRIES for a step that may race IAM's propagation


def terraform_init(env: Environment) -> Step:
    """Terraform against the environment's state bucket (deploy and teardown alike)."""
    return Step(
        "terraform init",
        [["terraform", "init", "-reconfigure", f"-backend-config={env.backend}"]],
        cwd=TERRAFORM_DIR,
    )


def plan(env: Environment, tag: str, auto_approve: bool = False, smoke: bool = True) -> list[Step]:
    p = ["--project", env.project]
    tf_vars = [f"-var-file={env.tfvars}", f"-var=migrations_image_tag={tag}"]
    approve = ["-auto-approve"] if auto_approve else []
    bucket = f"gs://{env.state_bucket}"
    steps = [
        Step(
            "preflight: the tools, the account, the project",
            [
                ["gcloud", "--version"],
                ["terraform", "version"],
                ["gcloud", "sql", "users", "assign-roles", "--help"],  # a gcloud new enough for step 9
                ["gcloud", "auth", "print-access-token", "--quiet"],  # someone is logged in
                ["gcloud", "projects", "describe", env.project, "--format=value(projectId)"],
            ],
        ),  # fmt: skip
        Step(
            f"the state bucket {bucket}",
            [
                [
                    "gcloud",
                    "storage",
                    "buckets",
                    "create",
                    bucket,
                    *p,
                    f"--location={env.region}",
                    "--uniform-bucket-level-access",
                    "--public-access-prevention",
                ],
                ["gcloud", "storage", "buckets", "update", bucket, "--versioning"],
            ],
            unless=["gcloud", "storage", "buckets", "describe", bucket, *p],
        ),  # fmt: skip
        terraform_init(env),
        Step(
            "stage 1: APIs, secrets, the image's repository and builder, the log-based metrics",
            [
                ["terraform", "apply", *tf_vars, *approve, *(f"-target={target}" for target in STAGE_ONE_TARGETS)],
            ],
            cwd=TERRAFORM_DIR,
        ),  # fmt: skip
    ]
    for secret in GENERATED_SECRETS:
        steps.append(
            Step(
                f"secret {secret}: a random value, unless it has one",
                [["gcloud", "secrets", "versions", "add", secret, *p, "--data-file=-"]],
                unless=_has_version(secret, p),
                stdin=_random_key,
            )
        )
    steps.append(
        Step(
            "the operator's secrets each have a version",
            [_version_listing(name, p) for name in OPERATOR_SECRETS],
            action=lambda: _require_versions(env),
        )
    )
    steps += [
        Step("the functions' bundles", [[sys.executable, "-m", "infra.bundle", "--all", str(BUNDLE_DIR)]]),
        Step(
            f"the migrations image {env.image}:{tag}",
            [
                [
                    "gcloud",
                    "builds",
                    "submit",
                    "{staged}",
                    *p,
                    f"--region={env.region}",
                    "--config={staged}/cloudbuild.yaml",
                    f"--substitutions=_IMAGE={env.image}:{tag}",
                    f"--service-account=projects/{env.project}/serviceAccounts/{env.builder}",
                    f"--gcs-source-staging-dir=gs://{env.project}-{env.prefix}-sources/migrations-source",
                ],
            ],
            unless=["gcloud", "artifacts", "docker", "images", "describe", f"{env.image}:{tag}", *p],
            tries=IAM_TRIES,
        ),  # fmt: skip
        Step(
            "terraform apply -target: the migrations job and the database logins",
            [["terraform", "apply", *tf_vars, *approve, *(f"-target={target}" for target in MIGRATIONS_TARGETS)]],
            cwd=TERRAFORM_DIR,
            tries=IAM_TRIES,
        ),  # fmt: skip
        Step(
            "the migrator's IAM user: cloudsqlsuperuser",
            [
                [
                    "gcloud",
                    "sql",
                    "users",
                    "assign-roles",
                    env.migrator,
                    f"--instance={env.prefix}-pg",
                    *p,
                    "--type=CLOUD_IAM_SERVICE_ACCOUNT",
                    "--database-roles=cloudsqlsuperuser",
                ],
            ],
        ),  # fmt: skip
        Step(
            "the migrations job",
            [
                [
                    "gcloud",
                    "run",
                    "jobs",
                    "execute",
                    f"{env.prefix}-migrations",
                    f"--region={env.region}",
                    *p,
                    "--wait",
                ],
            ],
            tries=IAM_TRIES,
        ),  # fmt: skip
        Step(
            "terraform apply, everything",
            [["terraform", "apply", *tf_vars, *approve]],
            cwd=TERRAFORM_DIR,
            tries=IAM_TRIES,
        ),  # fmt: skip
    ]
    if smoke:
        steps.append(
            Step(
                "the smoke check",
                [[sys.executable, "-m", "infra.smoke", "--env", env.name, "--skip-if-unregistered"]],
            )
        )
    return steps


def _version_listing(secret: str, p: list[str]) -> list[str]:
    # exits 0 whether or not a version exists, printing its name or nothing
    return [
        "gcloud", "secrets", "versions", "list", secret, *p, "--filter=state:ENABLED", "--limit=1",
        "--format=value(name)",
    ]  # fmt: skip


def _has_version(secret: str, p: list[str]) -> list[str]:
    # the listing's output, tested by a shell: a check's exit code is all run() reads
    return ["sh", "-c", f'test -n "$({shlex.join(_version_listing(secret, p))})"']


def _random_key() -> str:
    # 48 bytes from the OS's CSPRNG, as the functions read it (docs/deploy.md, "Secrets")
    return base64.b64encode(secrets.token_bytes(48)).decode()


def _require_versions(env: Environment) -> None:
    p = ["--project", env.project]
    missing = []
    for name in OPERATOR_SECRETS:
        # checked: a gcloud that fails (a typo'd project, no permission) is an error, not "no version"
        try:
            listed = subprocess.run(_version_listing(name, p), capture_output=True, text=True, check=True)
        except subprocess.CalledProcessError as failed:
            raise click.ClickException(
                f"could not list the versions of secret {name}: {shlex.join(failed.cmd)}\n{failed.stderr or ''}"
            ) from None
        if not listed.stdout.strip():
            missing.append(name)
    if missing:
        lines = [
            f"  gcloud secrets versions add {name} --project {env.project} --data-file=-   # {OPERATOR_SECRETS[name]}"
            for name in missing
        ]
        raise click.ClickException(
            "these secrets have no version yet; add each (paste the value, then Ctrl-D), then deploy again:\n"
            + "\n".join(lines)
        )


def run(
    steps: list[Step],
    dry_run: bool,
    staged: Path,
    echo: Callable[[str], None] = click.echo,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    for number, step in enumerate(steps, 1):
        echo(f"==> {number}. {step.title}")
        commands = [[part.replace("{staged}", str(staged)) for part in command] for command in step.commands]
        if step.action is not None:
            for command in commands:
                echo(f"    check: {shlex.join(command)}")
            if not dry_run:
                step.action()
            continue
        if step.unless is not None:
            echo(f"    unless: {shlex.join(step.unless)}")
            if (
                not dry_run
                and subprocess.run(step.unless, cwd=step.cwd, capture_output=True, check=False).returncode == 0
            ):
                echo("    already done")
                continue
        if step.when is not None:
            echo(f"    when: {shlex.join(step.when)}")
            if not dry_run and subprocess.run(step.when, cwd=step.cwd, capture_output=True, check=False).returncode:
                echo("    nothing to do")
                continue
        if step.tries > 1:
            echo(f"    (up to {step.tries} tries, {IAM_RETRY_PAUSE_S} s apart: IAM's grants take a while to hold)")
        for index, command in enumerate(commands):
            piped = step.stdin is not None and index == 0
            where = f"   (in {step.cwd.relative_to(REPO)})" if step.cwd != REPO else ""
            echo(f"    {'<generated> | ' if piped else ''}{shlex.join(command)}{where}")
            if dry_run:
                continue
            for attempt in range(1, step.tries + 1):
                stdin = step.stdin() if piped and step.stdin else None
                result = subprocess.run(command, cwd=step.cwd, input=stdin, text=True, check=False)
                if not result.returncode:
                    break
                if attempt == step.tries:
                    raise click.ClickException(f"step {number} ({step.title}) failed: {shlex.join(command)}")
                echo(f"    try {attempt} of {step.tries} failed; trying again in {IAM_RETRY_PAUSE_S} s")
                sleep(IAM_RETRY_PAUSE_S)


@click.command()
@click.argument("env_name", metavar="ENV")
@click.option("--dry-run", is_flag=True, help="Print every command; run none.")
@click.option("--yes", is_flag=True, help="Apply without Terraform's confirmation.")
@click.option("--no-smoke", is_flag=True, help="Skip the smoke check at the end.")
def main(env_name: str, dry_run: bool, yes: bool, no_smoke: bool) -> None:
    """Deploy the ledger to the environment ENV (infra/terraform/envs/ENV.tfvars)."""
    env = load_environment(env_name)
    with tempfile.TemporaryDirectory(prefix="ledger-migrations-") as staged:
        tag = image.stage(Path(staged))
        run(plan(env, tag, auto_approve=yes, smoke=not no_smoke), dry_run, Path(staged))


if __name__ == "__main__":
    main()
