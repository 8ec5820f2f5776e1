"""The platform under the functions (infra/terraform): state, providers, APIs, Cloud SQL,
Memorystore, Firestore, the network's egress, and secrets before the functions that mount
them. Read with python-hcl2; the locals that decide per function are evaluated with
`terraform console` and recomputed from the functions' folders (infra/functions.py)."""

import json
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest
from hcl2 import SerializationOptions

from infra.functions import discover, http_functions, push_functions

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "infra" / "terraform"
FUNCTIONS = discover()
OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
needs_terraform = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")


def load(name: str) -> dict:
    with open(TERRAFORM / name) as source:
        return hcl2.load(source, serialization_options=OPTIONS)


def resource(name: str, kind: str, label: str) -> dict:
    return next(block[kind][label] for block in load(name).get("resource", []) if label in block.get(kind, {}))


def test_state_is_in_gcs_and_the_providers_are_pinned_to_one_minor_version_with_a_lock_file():
    terraform = load("versions.tf")["terraform"][0]
    assert terraform["backend"] == [{"gcs": {}}]  # partial: envs/<env>.gcs.tfbackend
    providers = terraform["required_providers"][0]
    assert {name: providers[name]["version"] for name in ("google", "google-beta")} == {
        "google": "~> 6.50.0",
        "google-beta": "~> 6.50.0",
    }
    lock = {label: block for entry in load(".terraform.lock.hcl")["provider"] for label, block in entry.items()}
    for name in ("google", "google-beta"):
        locked = lock[f"registry.terraform.io/hashicorp/{name}"]
        assert locked["version"] == "6.50.0" and any(h.startswith("h1:") for h in locked["hashes"]), name
    for env in ("dev", "prod"):
        backend = (TERRAFORM / "envs" / f"{env}.gcs.tfbackend").read_text()
        assert "bucket =" in backend and f'prefix = "wallet-ledger/{env}"' in backend


def test_the_apis_are_enabled_and_the_platform_waits_for_them():
    enabled = resource("apis.tf", "google_project_service", "enabled")
    assert enabled["for_each"] == "${local.apis}" and enabled["disable_on_destroy"] is False
    apis = load("apis.tf")["locals"][0]["apis"]
    for api in ("sqladmin", "redis", "firestore", "secretmanager", "vpcaccess", "servicenetworking", "compute",
                "cloudfunctions", "run", "cloudbuild", "artifactregistry", "pubsub", "cloudscheduler", "iam",
                "iamcredentials", "monitoring", "logging", "apigateway", "servicemanagement", "servicecontrol",
                "cloudresourcemanager"):  # fmt: skip
        assert f"{api}.googleapis.com" in apis, api
    for name, kind, label in [
        ("database.tf", "google_sql_database_instance", "ledger"),
        ("redis.tf", "google_redis_instance", "locks"),
        ("redis.tf", "google_secret_manager_secret", "redis_auth"),
        ("network.tf", "google_compute_network", "ledger"),
        ("network.tf", "google_compute_address", "egress"),
        ("firestore.tf", "google_firestore_database", "ledger"),
        ("functions.tf", "google_cloudfunctions2_function", "http"),
        ("functions.tf", "google_cloudfunctions2_function", "pushed"),
    ]:
        assert "${google_project_service.enabled}" in resource(name, kind, label)["depends_on"], label


def test_cloud_sql_is_protected_backed_up_and_audited():
    instance = resource("database.tf", "google_sql_database_instance", "ledger")
    settings = instance["settings"][0]
    assert instance["deletion_protection"] is True and settings["deletion_protection_enabled"] is True
    assert settings["connector_enforcement"] == "REQUIRED"
    assert settings["ip_configuration"][0]["ipv4_enabled"] is False
    backups = settings["backup_configuration"][0]
    assert backups["enabled"] is True and backups["point_in_time_recovery_enabled"] is True
    assert {"location", "transaction_log_retention_days", "backup_retention_settings"} <= set(backups)
    assert {"day", "hour", "update_track"} <= set(settings["maintenance_window"][0])
    flags = {flag["name"]: flag["value"] for flag in settings["database_flags"]}
    for flag in (
        "log_connections",
        "log_disconnections",
        "log_lock_waits",
        "log_checkpoints",
        "cloudsql.enable_pgaudit",
    ):
        assert flags[flag] == "on", flag
    assert {"log_min_duration_statement", "pgaudit.log", "cloudsql.iam_authentication"} <= set(flags)
    audit = resource("database.tf", "google_project_iam_audit_config", "cloudsql")
    assert audit["service"] == "cloudsql.googleapis.com"
    assert {c["log_type"] for c in audit["audit_log_config"]} == {"ADMIN_READ", "DATA_READ", "DATA_WRITE"}


def test_redis_takes_auth_and_tls_and_its_auth_string_is_a_secret_the_functions_mount():
    redis = resource("redis.tf", "google_redis_instance", "locks")
    assert redis["auth_enabled"] is True and redis["transit_encryption_mode"] == "SERVER_AUTHENTICATION"
    version = resource("redis.tf", "google_secret_manager_secret_version", "redis_auth")
    assert version["secret_data"] == "${google_redis_instance.locks.auth_string}"
    assert resource("redis.tf", "google_secret_manager_secret", "redis_auth")["secret_id"] == "redis-auth"
    env = next(block["redis_env"] for block in load("redis.tf")["locals"] if "redis_env" in block)
    assert env["LEDGER_REDIS_URL"].startswith("rediss://") and "server_ca_certs" in env["LEDGER_REDIS_CA_CERT"]
    for kind in ("http", "pushed"):
        mounts = resource("functions.tf", "google_cloudfunctions2_function", kind)["service_config"][0]
        keys = [
            block["secret_environment_variables"]["content"][0]["key"]
            for block in mounts["dynamic"]
            if "secret_environment_variables" in block
        ]
        assert "LEDGER_REDIS_AUTH" in keys, kind
    accessor = resource("redis.tf", "google_secret_manager_secret_iam_member", "redis_auth")
    assert accessor["for_each"] == "${local.redis_logins}"


def test_firestore_is_delete_protected_with_point_in_time_recovery():
    database = resource("firestore.tf", "google_firestore_database", "ledger")
    assert database["delete_protection_state"] == "DELETE_PROTECTION_ENABLED"
    assert database["point_in_time_recovery_enablement"] == "POINT_IN_TIME_RECOVERY_ENABLED"


def test_egress_leaves_through_nat_on_one_reserved_address():
    nat = resource("network.tf", "google_compute_router_nat", "egress")
    assert nat["nat_ip_allocate_option"] == "MANUAL_ONLY"
    assert nat["nat_ips"] == ["${google_compute_address.egress.self_link}"]
    assert resource("network.tf", "google_compute_address", "egress")["address_type"] == "EXTERNAL"
    firewall = resource("network.tf", "google_compute_firewall", "deny_ingress")
    assert firewall["direction"] == "INGRESS" and firewall["deny"] == [{"protocol": "all"}]
    outputs = {label for block in load("network.tf")["output"] for label in block}
    assert "erp_egress_ip" in outputs


def test_no_function_deploys_before_the_secrets_it_mounts_at_latest_have_a_version():
    data = next(
        block["google_secret_manager_secret_version"]["mounted"] for block in load("secret_versions.tf")["data"]
    )
    assert data["fetch_secret_data"] is False  # the values stay out of state
    checked = {value.removeprefix("${").removesuffix(".id}") for value in data["for_each"].values()}
    for kind in ("http", "pushed"):
        function = resource("functions.tf", "google_cloudfunctions2_function", kind)
        assert "${data.google_secret_manager_secret_version.mounted}" in function["depends_on"], kind
        for block in function["service_config"][0].get("dynamic", []):
            mount = block.get("secret_environment_variables", {}).get("content", [{}])[0]
            if mount.get("version") == "latest":
                secret = mount["secret"].removeprefix("${").removesuffix(".secret_id}")
                assert secret in checked, (kind, secret)


def needs(tmp_path: Path) -> dict:
    module = tmp_path / "infra" / "terraform"
    module.mkdir(parents=True)
    for name in ("function_list.tf", "variables.tf", "function_needs.tf"):
        shutil.copy(TERRAFORM / name, module)
    (tmp_path / "functions").symlink_to(REPO / "functions")
    result = subprocess.run(
        ["terraform", "console", "-var=project_id=p"],
        cwd=module,
        input="jsonencode({redis = local.redis_functions, logins = local.redis_logins,"
        " egress = local.function_vpc_egress})",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(json.loads(result.stdout))


@needs_terraform
def test_redis_and_the_internet_go_to_the_functions_that_use_them(tmp_path):
    got = needs(tmp_path)
    # HTTP functions rate-limit their callers; balance actions pushed as messages lock usage
    users = set(http_functions(FUNCTIONS)) | {
        name for name, f in push_functions(FUNCTIONS).items() if "action_topics" in f.push_topic_settings
    }
    assert set(got["redis"]) == users
    assert set(got["logins"]) == {FUNCTIONS[name].database_login for name in users}
    assert "exporter" not in got["logins"] and "relay" not in got["logins"]  # no Redis, no AUTH string
    outside = {name for name, f in FUNCTIONS.items() if f.database_login in ("exporter", "automation")}
    assert {name for name, egress in got["egress"].items() if egress == "ALL_TRAFFIC"} == outside
    assert set(got["egress"]) == set(FUNCTIONS)


def test_teardown_is_not_stopped_by_the_peering_or_the_sources_buckets_objects():
    peering = resource("network.tf", "google_service_networking_connection", "private_services")
    assert peering["deletion_policy"] == "ABANDON"  # "Producer services still using this connection"
    assert resource("functions.tf", "google_storage_bucket", "sources")["force_destroy"] is True


def test_old_migrations_images_are_deleted_and_recent_ones_kept():
    policies = resource("jobs.tf", "google_artifact_registry_repository", "ledger")["cleanup_policies"]
    by_action = {policy["action"]: policy for policy in policies}
    assert by_action["KEEP"]["most_recent_versions"][0]["keep_count"] >= 1
    assert by_action["DELETE"]["condition"][0]["older_than"] == "2592000s"


def test_http_functions_keep_warm_instances_per_environment():
    function = resource("functions.tf", "google_cloudfunctions2_function", "http")
    assert function["service_config"][0]["min_instance_count"] == "${var.http_function_min_instances}"
    values = {env: load(f"envs/{env}.tfvars") for env in ("dev", "prod")}
    assert values["dev"]["http_function_min_instances"] == 0 and values["prod"]["http_function_min_instances"] == 1
    # a warm instance also builds its clients at start (common/bootstrap.py warm_up)
    env = function["service_config"][0]["environment_variables"]
    assert 'LEDGER_WARM_UP_ON_START = var.http_function_min_instances > 0 ? "true" : "false"' in env


def test_dev_reaches_its_service_functions_from_outside_and_both_name_who_acts_as_operators():
    values = {env: load(f"envs/{env}.tfvars") for env in ("dev", "prod")}
    assert values["dev"]["service_function_ingress"] == "ALLOW_ALL"
    assert "service_function_ingress" not in values["prod"]  # the default: internal and load balancer
    for env, value in values.items():
        assert value["caller_token_creators"]["operators"][0].startswith("group:"), env
        assert "@" in value["db_operator_group"] and ":" not in value["db_operator_group"], env


def test_operators_log_in_to_cloud_sql_as_ledger_operator_through_their_group():
    user = resource("database.tf", "google_sql_user", "operators")
    assert user["type"] == "CLOUD_IAM_GROUP" and user["name"] == "${var.db_operator_group}"
    assert user["count"] == "${var.db_operator_group == null ? 0 : 1}"
    roles = resource("database.tf", "google_project_iam_member", "operators")
    assert "roles/cloudsql.client" in roles["for_each"] and "roles/cloudsql.instanceUser" in roles["for_each"]
    assert roles["member"] == "group:${var.db_operator_group}"
    mapping = next(
        block["database_login_roles"] for block in load("jobs.tf")["locals"] if "database_login_roles" in block
    )
    assert 'for user in google_sql_user.operators : user.name => "ledger_operator"' in mapping
    job = resource("jobs.tf", "google_cloud_run_v2_job", "migrations")
    env = {entry["name"]: entry["value"] for entry in job["template"][0]["template"][0]["containers"][0]["env"]}
    assert env["LEDGER_DB_LOGIN_ROLES"] == "${jsonencode(local.database_login_roles)}"
