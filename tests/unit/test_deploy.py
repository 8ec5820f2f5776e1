"""`python -m infra.deploy ENV --dry-run`: the steps and their commands, read without
gcloud or terraform (nothing is run)."""

import base64
import subprocess

import click
import pytest
from click.testing import CliRunner

from infra import deploy


@pytest.fixture
def env(tmp_path):
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "dev.tfvars").write_text('project_id = "acme-dev"\nname = "wl"\ndb_availability = "ZONAL"\n')
    (tmp_path / "envs" / "dev.gcs.tfbackend").write_text('bucket = "acme-dev-tfstate"\nprefix = "ledger"\n')
    return deploy.load_environment("dev", tmp_path)


@pytest.fixture
def nothing_runs(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a dry run ran {args}")

    monkeypatch.setattr(subprocess, "run", refuse)


def dry_run(env, tag="0123abcd0123abcd"):
    lines = []
    deploy.run(deploy.plan(env, tag), dry_run=True, staged=deploy.REPO / "staged", echo=lines.append)
    return lines


def test_the_environment_comes_from_its_files_and_the_variables_defaults(env):
    assert (env.project, env.prefix, env.state_bucket) == ("acme-dev", "wl", "acme-dev-tfstate")
    assert env.region == deploy._variable_default("region")


def test_a_dry_run_prints_every_step_in_order_and_runs_nothing(env, nothing_runs):
    titles = [line for line in dry_run(env) if line.startswith("==>")]
    order = ["preflight", "state bucket", "terraform init", "stage 1", "cursor-key", "operator's secrets", "bundles",
             "migrations image", "-target: the migrations job", "cloudsqlsuperuser", "migrations job",
             "terraform apply, everything", "smoke"]  # fmt: skip
    assert len(titles) == len(order)
    assert all(word in title for word, title in zip(order, titles, strict=True))


def test_the_commands_name_the_environment(env, nothing_runs):
    text = "\n".join(dry_run(env))
    assert "gcloud storage buckets create gs://acme-dev-tfstate --project acme-dev" in text
    assert "--uniform-bucket-level-access --public-access-prevention" in text
    assert "terraform init -reconfigure -backend-config=envs/dev.gcs.tfbackend" in text
    assert (
        "-target=google_project_service.enabled" in text and "-target=google_secret_manager_secret.cursor_key" in text
    )
    assert "gcloud builds submit " + str(deploy.REPO / "staged") in text
    assert "--substitutions=_IMAGE=asia-southeast2-docker.pkg.dev/acme-dev/wl/migrations:0123abcd0123abcd" in text
    assert "terraform apply -var-file=envs/dev.tfvars -var=migrations_image_tag=0123abcd0123abcd   (in" in text
    assert (
        "gcloud sql users assign-roles ledger-migrator@acme-dev.iam --instance=wl-pg --project acme-dev"
        " --type=CLOUD_IAM_SERVICE_ACCOUNT --database-roles=cloudsqlsuperuser"
    ) in text
    assert "gcloud run jobs execute wl-migrations --region=asia-southeast2 --project acme-dev --wait" in text
    assert "-m infra.smoke --env dev --skip-if-unregistered" in text


def commands_of(env, title_part):
    step = next(step for step in deploy.plan(env, "feed") if title_part in step.title)
    return [" ".join(command) for command in step.commands]


def test_the_migrations_run_before_any_new_function_is_applied(env):
    titles = [step.title for step in deploy.plan(env, "feed")]
    job = next(i for i, title in enumerate(titles) if title == "the migrations job")
    full_apply = next(i for i, step in enumerate(deploy.plan(env, "feed")) if step.commands[0][:2] == [
        "terraform", "apply"] and not any(part.startswith("-target=") for part in step.commands[0]))  # fmt: skip
    assert job < full_apply == len(titles) - 2  # only the smoke check after it
    (targeted,) = commands_of(env, "-target: the migrations job")
    for address in ("google_cloud_run_v2_job.migrations", "google_sql_user.database_login"):
        assert f"-target={address}" in targeted
    assert "google_cloudfunctions2_function" not in targeted


def test_stage_one_creates_the_log_based_metrics_before_the_alerts_that_read_them(env):
    (stage_one,) = commands_of(env, "stage 1")
    assert "-target=google_logging_metric.distribution" in stage_one
    assert "-target=google_logging_metric.counter" in stage_one
    assert "google_monitoring_alert_policy" not in stage_one


def test_every_targeted_address_is_a_resource_of_the_configuration():
    from infra import hcl

    declared = {block.address for block in hcl.terraform().resources.values()}
    assert set(deploy.STAGE_ONE_TARGETS + deploy.MIGRATIONS_TARGETS) <= declared


def test_the_steps_that_race_iam_propagation_are_tried_three_times(env):
    tried = {step.title for step in deploy.plan(env, "feed") if step.tries == deploy.IAM_TRIES}
    assert tried == {
        "the migrations image asia-southeast2-docker.pkg.dev/acme-dev/wl/migrations:feed",
        "terraform apply -target: the migrations job and the database logins",
        "the migrations job",
        "terraform apply, everything",
    }


def test_a_retried_step_waits_a_minute_between_tries_and_says_so(monkeypatch):
    outcomes = iter([1, 1, 0])
    ran, slept, lines = [], [], []

    def fake_run(command, **kwargs):
        ran.append(command)
        return subprocess.CompletedProcess(command, next(outcomes))

    monkeypatch.setattr(subprocess, "run", fake_run)
    step = deploy.Step("flaky", [["terraform", "apply"]], tries=3)
    deploy.run([step], dry_run=False, staged=deploy.REPO, echo=lines.append, sleep=slept.append)
    assert len(ran) == 3 and slept == [60, 60]
    assert "    try 1 of 3 failed; trying again in 60 s" in lines


def test_a_step_failing_every_try_stops_the_deploy(monkeypatch):
    ran = []
    monkeypatch.setattr(
        subprocess, "run", lambda command, **k: ran.append(command) or subprocess.CompletedProcess(command, 1)
    )
    step = deploy.Step("broken", [["terraform", "apply"]], tries=3)
    with pytest.raises(click.ClickException, match="step 1 \\(broken\\) failed"):
        deploy.run([step], dry_run=False, staged=deploy.REPO, echo=lambda line: None, sleep=lambda s: None)
    assert len(ran) == 3


def test_the_image_is_built_only_when_its_tag_is_not_pushed(env):
    image_step = next(step for step in deploy.plan(env, "feed") if "migrations image" in step.title)
    assert image_step.unless[:5] == ["gcloud", "artifacts", "docker", "images", "describe"]


def test_the_cursor_key_is_48_random_bytes_piped_to_gcloud(env):
    step = next(step for step in deploy.plan(env, "feed") if "cursor-key" in step.title)
    assert step.commands == [
        ["gcloud", "secrets", "versions", "add", "cursor-key", "--project", "acme-dev", "--data-file=-"]
    ]
    first, second = step.stdin(), step.stdin()
    assert len(base64.b64decode(first)) == 48 and first != second


def test_missing_operator_secrets_stop_the_deploy_with_the_exact_commands(env, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout="\n"))
    with pytest.raises(click.ClickException) as stopped:
        deploy._require_versions(env)
    message = stopped.value.message
    assert "gcloud secrets versions add erp-credential --project acme-dev --data-file=-" in message
    assert "gcloud secrets versions add payment-provider-token --project acme-dev --data-file=-" in message


def test_a_failing_secrets_listing_is_an_error_not_a_missing_version(env, monkeypatch):
    def typo_project(command, **kwargs):
        assert kwargs.get("check") is True
        raise subprocess.CalledProcessError(1, command, stderr="Project acme-dve not found")

    monkeypatch.setattr(subprocess, "run", typo_project)
    with pytest.raises(click.ClickException) as stopped:
        deploy._require_versions(env)
    assert "could not list the versions of secret erp-credential" in stopped.value.message
    assert "acme-dve not found" in stopped.value.message


def test_an_unknown_environment_is_refused(tmp_path):
    result = CliRunner().invoke(deploy.main, ["nowhere", "--dry-run"])
    assert result.exit_code == 1 and "envs/nowhere.tfvars" in result.output


def teardown_text(env):
    from infra import teardown

    lines = []
    deploy.run(teardown.plan(env), dry_run=True, staged=deploy.REPO, echo=lines.append)
    return "\n".join(lines)


def test_teardown_deletes_the_protected_databases_before_destroying_the_rest(env, nothing_runs):
    text = teardown_text(env)
    order = [
        "gcloud sql instances delete wl-pg-replica --project acme-dev --quiet",
        "gcloud sql instances patch wl-pg --project acme-dev --no-deletion-protection",
        "gcloud sql instances delete wl-pg --project acme-dev --quiet",
        "terraform state rm google_sql_database_instance.ledger",
        "--no-delete-protection",
        "gcloud firestore databases delete",
        "terraform destroy -var-file=envs/dev.tfvars",
    ]
    positions = [text.index(command) for command in order]
    assert positions == sorted(positions)


def test_teardown_forgets_every_instance_of_an_address_without_quoting_its_keys(env):
    from infra import teardown

    removals = [step.commands for step in teardown.plan(env) if step.commands[0][:3] == ["terraform", "state", "rm"]]
    assert removals == [[["terraform", "state", "rm", address]] for address in teardown.SQL_STATE]
    assert "google_sql_user.database_login" in teardown.SQL_STATE


def test_every_teardown_step_runs_only_if_what_it_removes_exists(env):
    from infra import teardown

    steps = teardown.plan(env)
    unconditional = [step.title for step in steps if step.when is None]
    assert unconditional == ["terraform init", "the functions' bundles", "terraform destroy"]
    firestore = next(step for step in steps if "Firestore" in step.title)
    assert "terraform state list google_firestore_database.ledger" in firestore.when[-1]
    sql = next(step for step in steps if step.title.startswith("Cloud SQL"))
    assert sql.when[:4] == ["gcloud", "sql", "instances", "describe"]


def test_a_step_whose_check_fails_runs_nothing(monkeypatch):
    ran, lines = [], []

    def fake_run(command, **kwargs):
        ran.append(command)
        return subprocess.CompletedProcess(command, 1)

    monkeypatch.setattr(subprocess, "run", fake_run)
    step = deploy.Step("gone already", [["terraform", "state", "rm", "x.y"]], when=["check"])
    deploy.run([step], dry_run=False, staged=deploy.REPO, echo=lines.append)
    assert ran == [["check"]] and "    nothing to do" in lines


def test_production_teardown_takes_a_final_backup(tmp_path, nothing_runs):
    from infra import teardown

    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "prod.tfvars").write_text('project_id = "acme-prod"\nname = "wl"\n')
    (tmp_path / "envs" / "prod.gcs.tfbackend").write_text('bucket = "b"\n')
    prod = deploy.load_environment("prod", tmp_path)
    replica, delete = [
        c for step in teardown.plan(prod) for c in step.commands if c[:4] == ["gcloud", "sql", "instances", "delete"]
    ]
    assert "--enable-final-backup" in delete and "--final-backup-retention-days=365" in delete
    # the read replica goes first (a primary with a replica can't be deleted), without a
    # backup: it holds nothing of its own
    assert replica[4] == "wl-pg-replica" and "--enable-final-backup" not in replica


def test_development_teardown_takes_no_final_backup(env, nothing_runs):
    assert "--enable-final-backup" not in teardown_text(env)


def environment_files(tmp_path, name, project, availability="ZONAL"):
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / f"{name}.tfvars").write_text(f'project_id = "{project}"\ndb_availability = "{availability}"\n')
    (tmp_path / "envs" / f"{name}.gcs.tfbackend").write_text('bucket = "b"\n')


def test_teardown_asks_for_the_project_id(monkeypatch, tmp_path):
    from infra import teardown

    monkeypatch.setattr(teardown, "load_environment", lambda name: deploy.load_environment(name, tmp_path))
    environment_files(tmp_path, "dev", "acme-dev")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    result = CliRunner().invoke(teardown.main, ["dev"], input="acme-prod\n")
    assert result.exit_code == 1 and "nothing done" in result.output


def test_production_teardown_needs_its_flag_before_anything(monkeypatch, tmp_path):
    from infra import teardown

    monkeypatch.setattr(teardown, "load_environment", lambda name: deploy.load_environment(name, tmp_path))
    environment_files(tmp_path, "prod", "acme-prod")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    refused = CliRunner().invoke(teardown.main, ["prod"], input="acme-prod\n")
    assert refused.exit_code == 1 and teardown.PRODUCTION_FLAG in refused.output
    assert "Type the project's id" not in refused.output
    asked = CliRunner().invoke(teardown.main, ["prod", teardown.PRODUCTION_FLAG], input="acme-dev\n")
    assert asked.exit_code == 1 and "Type the project's id" in asked.output and "nothing done" in asked.output


def test_a_regional_database_is_production_whatever_the_environment_is_called(monkeypatch, tmp_path):
    from infra import teardown

    monkeypatch.setattr(teardown, "load_environment", lambda name: deploy.load_environment(name, tmp_path))
    environment_files(tmp_path, "prod-eu", "acme-eu", availability="REGIONAL")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    refused = CliRunner().invoke(teardown.main, ["prod-eu"], input="acme-eu\n")
    assert refused.exit_code == 1 and teardown.PRODUCTION_FLAG in refused.output
    assert "--enable-final-backup" in teardown_text(deploy.load_environment("prod-eu", tmp_path))


def test_an_environment_that_does_not_say_is_production(tmp_path):
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "staging.tfvars").write_text('project_id = "acme-staging"\n')
    (tmp_path / "envs" / "staging.gcs.tfbackend").write_text('bucket = "b"\n')
    assert deploy.load_environment("staging", tmp_path).production  # variables.tf's default is REGIONAL


def test_teardown_takes_every_cloud_sql_resource_out_of_the_state():
    """terraform destroy would refresh whatever is left against a deleted instance."""
    from infra import hcl, teardown

    module = hcl.read(deploy.TERRAFORM_DIR)
    in_terraform = {f"{type_}.{name}" for type_, name in module.resources if type_.startswith("google_sql_")}
    assert in_terraform == set(teardown.SQL_STATE)


def test_teardown_builds_the_bundles_terraform_reads_before_destroying(env):
    from infra import teardown

    titles = [step.title for step in teardown.plan(env)]
    assert titles.index("the functions' bundles") == titles.index("terraform destroy") - 1
