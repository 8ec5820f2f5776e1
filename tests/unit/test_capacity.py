"""Cloud SQL's max_connections is what the functions can open at most: every function's
max instances times its pool size, summed, plus the migrations job's and operators'
reserve and Postgres's superuser slots (infra/terraform/capacity.tf). Evaluated by
`terraform console` for the defaults and for each environment's tfvars, and recomputed
here from the functions' folders (infra/functions.py)."""

import json
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest
from hcl2 import SerializationOptions

from infra.functions import discover, http_functions, push_functions, tick_functions

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "infra" / "terraform"
FUNCTIONS = discover()
SCHEDULED = sorted(set(tick_functions(FUNCTIONS)) - set(push_functions(FUNCTIONS)))
SUPERUSER_RESERVED = 3  # Postgres's default superuser_reserved_connections

OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
needs_terraform = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")

EXPRESSION = """jsonencode({
  max_instances = local.function_max_instances_all, pool = local.function_pool_size,
  max_connections = local.max_connections, ceiling = local.db_connection_ceiling,
  migration = var.db_migration_connections, operators = var.db_operator_connections,
  http_max = var.function_max_instances, push_max = var.push_function_max_instances,
  by_name = var.function_max_instances_by_name, end_user_max = var.end_user_function_max_instances,
  end_users = local.end_user_functions,
  pool_size = var.function_db_pool_size, scheduled_pool_size = var.scheduled_function_db_pool_size,
  concurrency = local.function_request_concurrency, function_concurrency = var.function_concurrency,
  replica_max_connections = local.db_read_replica_max_connections,
  replica_connections = local.db_read_replica_connections, replica_ceiling = local.db_read_replica_connection_ceiling,
})"""


def capacity(tmp_path: Path, *arguments: str) -> dict:
    """capacity.tf's locals, with the files they read; none needs a provider."""
    module = tmp_path / "infra" / "terraform"
    module.mkdir(parents=True)
    for name in ("function_list.tf", "variables.tf", "auth.tf", "capacity.tf"):
        shutil.copy(TERRAFORM / name, module)
    (tmp_path / "functions").symlink_to(REPO / "functions")
    (tmp_path / "docs").symlink_to(REPO / "docs")  # auth.tf builds the gateway's routes from docs/openapi.json
    result = subprocess.run(
        ["terraform", "console", "-var=project_id=p", *arguments],
        cwd=module,
        input=" ".join(EXPRESSION.split()),  # the console reads one expression per line
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(json.loads(result.stdout))


ENVIRONMENTS = {
    "defaults": [],
    "dev": [f"-var-file={TERRAFORM / 'envs' / 'dev.tfvars'}"],
    "prod": [f"-var-file={TERRAFORM / 'envs' / 'prod.tfvars'}"],
}


@needs_terraform
@pytest.mark.parametrize("environment", sorted(ENVIRONMENTS))
def test_max_connections_is_every_functions_instances_times_its_pool_plus_the_reserves(tmp_path, environment):
    got = capacity(tmp_path, *ENVIRONMENTS[environment])
    assert sorted(got["max_instances"]) == sorted(FUNCTIONS) == sorted(got["pool"])

    for name in FUNCTIONS:
        if name in SCHEDULED:
            expected_max, expected_pool = 1, got["scheduled_pool_size"]
        else:
            if name in http_functions(FUNCTIONS):
                default_max = got["http_max"]
                if name in got["end_users"] and got["end_user_max"] is not None:
                    default_max = got["end_user_max"]
            else:
                default_max = got["push_max"]
            expected_max, expected_pool = got["by_name"].get(name, default_max), got["pool_size"]
        assert (got["max_instances"][name], got["pool"][name]) == (expected_max, expected_pool), name

    functions = sum(got["max_instances"][name] * got["pool"][name] for name in FUNCTIONS)
    assert got["max_connections"] == functions + got["migration"] + got["operators"] + SUPERUSER_RESERVED
    # and each environment's tier holds it (database.tf's precondition)
    assert got["max_connections"] <= got["ceiling"]


@needs_terraform
@pytest.mark.parametrize("environment", sorted(ENVIRONMENTS))
def test_a_background_job_serves_one_pass_at_a_time_and_every_pool_covers_its_requests(tmp_path, environment):
    got = capacity(tmp_path, *ENVIRONMENTS[environment])
    assert sorted(got["concurrency"]) == sorted(FUNCTIONS)
    for name in FUNCTIONS:
        expected = 1 if name in SCHEDULED else got["function_concurrency"]
        assert got["concurrency"][name] == expected, name
        # one connection per request served at once (a job's second: the pacer's reading)
        assert got["pool"][name] >= got["concurrency"][name], name
    for name in SCHEDULED:
        assert got["pool"][name] >= 2, name


@needs_terraform
@pytest.mark.parametrize("environment", sorted(ENVIRONMENTS))
def test_the_read_replica_takes_the_primarys_max_connections_and_its_tier_holds_its_readers(tmp_path, environment):
    got = capacity(tmp_path, *ENVIRONMENTS[environment])
    # Postgres refuses a hot standby whose max_connections is below its primary's
    assert got["replica_max_connections"] == got["max_connections"]
    assert got["replica_connections"] == got["operators"] + SUPERUSER_RESERVED
    assert got["replica_connections"] <= got["replica_ceiling"]


@needs_terraform
def test_a_replica_tier_too_small_for_its_readers_is_seen(tmp_path):
    got = capacity(tmp_path, "-var=db_read_replica_tier=db-custom-1-100")
    assert got["replica_ceiling"] == 10 and got["replica_connections"] > got["replica_ceiling"]


@needs_terraform
def test_an_environment_sets_its_own_sizes(tmp_path):
    prod = capacity(tmp_path, *ENVIRONMENTS["prod"])
    assert prod["max_instances"]["usage"] == 30
    assert prod["max_instances"]["wallets"] == 20  # a function end users call


@needs_terraform
def test_a_scheduled_function_keeps_one_instance_whatever_it_is_given(tmp_path):
    name = SCHEDULED[0]
    got = capacity(tmp_path, f"-var=function_max_instances_by_name={{{name} = 7}}")
    assert got["max_instances"][name] == 1


@needs_terraform
def test_a_tier_too_small_for_the_connections_is_seen(tmp_path):
    got = capacity(tmp_path, "-var=db_tier=db-f1-micro")
    assert got["ceiling"] == 61 and got["max_connections"] > got["ceiling"]


def _load(name: str) -> dict:
    with open(TERRAFORM / name) as source:
        return hcl2.load(source, serialization_options=OPTIONS)


def _resource(document: dict, kind: str, name: str) -> dict:
    return next(block[kind][name] for block in document["resource"] if kind in block and name in block[kind])


def test_cloud_sql_takes_max_connections_from_the_sum_and_refuses_a_tier_that_cannot_hold_it():
    database = _load("database.tf")
    instance = _resource(database, "google_sql_database_instance", "ledger")
    flags = {flag["name"]: flag["value"] for flag in instance["settings"][0]["database_flags"]}
    assert flags["max_connections"] == "${tostring(local.max_connections)}"
    conditions = [check["condition"] for check in instance["lifecycle"][0]["precondition"]]
    assert "${local.max_connections <= local.db_connection_ceiling}" in conditions


def test_every_function_runs_its_instances_and_pool_from_the_capacity_maps():
    functions = _load("functions.tf")
    for kind in ("http", "pushed"):
        service = _resource(functions, "google_cloudfunctions2_function", kind)["service_config"][0]
        assert service["max_instance_count"] == "${local.function_max_instances_all[each.key]}", kind
        assert service["max_instance_request_concurrency"] == "${local.function_request_concurrency[each.key]}", kind
        assert "local.function_own_env[each.key]" in service["environment_variables"], kind
    own_env = next(block["function_own_env"] for block in functions["locals"] if "function_own_env" in block)
    assert "{LEDGER_DB_POOL_SIZE = tostring(local.function_pool_size[name])}" in own_env


def test_the_read_replica_follows_the_primary_on_the_private_network_with_iam_logins():
    database = _load("database.tf")
    primary = _resource(database, "google_sql_database_instance", "ledger")
    replica = _resource(database, "google_sql_database_instance", "read_replica")
    assert replica["count"] == "${var.db_read_replica ? 1 : 0}"
    assert replica["master_instance_name"] == "${google_sql_database_instance.ledger.name}"
    settings, primary_settings = replica["settings"][0], primary["settings"][0]
    assert settings["ip_configuration"] == primary_settings["ip_configuration"]
    assert settings["connector_enforcement"] == "REQUIRED"
    flags = {flag["name"]: flag["value"] for flag in settings["database_flags"]}
    assert flags["cloudsql.iam_authentication"] == "on"
    assert flags["max_connections"] == "${tostring(local.db_read_replica_max_connections)}"
    # every flag of the primary's is the replica's too, but its own max_connections
    primary_flags = {flag["name"]: flag["value"] for flag in primary_settings["database_flags"]}
    shared = set(primary_flags) - {"max_connections"}
    assert {name: flags.get(name) for name in shared} == {name: primary_flags[name] for name in shared}
    conditions = [check["condition"] for check in replica["lifecycle"][0]["precondition"]]
    assert "${local.db_read_replica_connections <= local.db_read_replica_connection_ceiling}" in conditions


def test_the_environments_choose_the_replica():
    def tfvars(name: str) -> dict:
        with open(TERRAFORM / "envs" / f"{name}.tfvars") as source:
            return hcl2.load(source, serialization_options=OPTIONS)

    assert tfvars("dev").get("db_read_replica", False) is False
    assert tfvars("prod")["db_read_replica"] is True
