"""What infra/terraform must hold, whichever resources spell it: read with python-hcl2
(infra/hcl.py), with the provider-free locals evaluated by `terraform console` where a
value matters. Generic over resource names, so each check holds as the Terraform
changes: every function folder deployed with its entry point; every topic, subscription
and secret the code names created; every setting the code reads set, or safely
defaulted; nothing public; every dead-letter topic read; every trigger able to invoke."""

from __future__ import annotations

import ast
import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from common.config import Settings
from infra import hcl
from infra.functions import FUNCTIONS_DIR, discover

MODULE = hcl.terraform()
FUNCTIONS = discover()
FUNCTION = "google_cloudfunctions2_function"
INVOKER_BINDINGS = ("google_cloud_run_v2_service_iam_member", "google_cloud_run_v2_service_iam_binding")
pytestmark = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")


def for_each(block: hcl.Block) -> str | None:
    return hcl.unwrap(block.body["for_each"]) if "for_each" in block.body else None


def over_instances(block: hcl.Block, expression: object) -> str:
    """A list of `expression`, once per instance of the block (each.* bound)."""
    collection = for_each(block)
    if collection is None:
        return f"[{hcl.unwrap(expression)}]"
    return f"[for k, v in {collection} : {hcl.each(hcl.unwrap(expression))}]"


def evaluable(expression: object) -> bool:
    free = hcl.provider_free_locals(MODULE)
    return not hcl.references(expression, MODULE) and set(re.findall(r"\blocal\.(\w+)", str(expression))) <= free


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """One `terraform console` run for every value the checks below need."""
    wanted = {"cursor_functions": "local.cursor_functions"}
    for block in MODULE.of_type(FUNCTION):
        wanted[f"deployed {block.name}"] = over_instances(block, "${each.key}" if for_each(block) else '"-"')
        wanted[f"entry {block.name}"] = over_instances(block, block.body["build_config"][0]["entry_point"])
    for type_, attribute in (
        ("google_pubsub_topic", "name"),
        ("google_pubsub_subscription", "name"),
        ("google_secret_manager_secret", "secret_id"),
    ):
        for block in MODULE.of_type(type_):
            if evaluable(block.body[attribute]) and evaluable(for_each(block) or ""):
                wanted[f"{type_} {block.name}"] = over_instances(block, block.body[attribute])
    for type_ in INVOKER_BINDINGS:
        for block in MODULE.of_type(type_):
            wanted[f"keys {block.name}"] = over_instances(block, "${each.key}" if for_each(block) else '"-"')
    for block in MODULE.of_type("google_pubsub_subscription"):
        for push in hcl.blocks(block.body, "push_config"):
            target = _function_reference(push["push_endpoint"])
            if target and target[1] and evaluable(target[1]):
                wanted[f"pushed {block.name}"] = over_instances(block, "${" + target[1] + "}")
    expression = "{" + ", ".join(f'"{key}" = {value}' for key, value in wanted.items()) + "}"
    return hcl.console(expression, work=tmp_path_factory.mktemp("console"))


def deployed_by(evaluated) -> dict[str, str]:
    """function name -> the function resource that deploys it"""
    found: dict[str, str] = {}
    for block in MODULE.of_type(FUNCTION):
        for name in evaluated[f"entry {block.name}"]:
            assert name not in found, f"{name} is deployed by {found[name]} and {block.name}"
            found[name] = block.name
    return found


# --- every function folder is deployed, with its entry point ----------------------


def test_every_function_folder_is_deployed_once_with_its_entry_point(evaluated):
    deployed = deployed_by(evaluated)
    assert sorted(deployed) == sorted(FUNCTIONS)
    for block in MODULE.of_type(FUNCTION):
        # the entry point is the folder's name, so one resource per folder's function
        assert evaluated[f"entry {block.name}"] == evaluated[f"deployed {block.name}"], block.name
    for name in FUNCTIONS:
        tree = ast.parse((FUNCTIONS_DIR / name / "main.py").read_text())
        defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert name in defined, f"functions/{name}/main.py defines no {name}()"


# --- every topic, subscription and secret the code names exists -------------------


def named(evaluated, type_: str) -> set[str]:
    return {name for key, names in evaluated.items() if key.startswith(f"{type_} ") for name in names}


def test_every_topic_a_setting_names_exists(evaluated):
    settings = Settings()
    topics = named(evaluated, "google_pubsub_topic")
    for field in dataclasses.fields(Settings):
        if field.name.endswith(("_topic", "_topics")):
            for topic in getattr(settings, field.name).split(","):
                assert topic in topics, f"{field.name}: no topic {topic}"


def test_every_dead_letter_subscription_the_code_reads_exists(evaluated):
    """common/dead_letters.py reads a dead-letter topic's subscription of the same name."""
    settings = Settings()
    subscriptions = named(evaluated, "google_pubsub_subscription")
    for field in dataclasses.fields(Settings):
        if field.name.endswith("dead_letter_topic"):
            assert getattr(settings, field.name) in subscriptions, field.name


# Settings read from a secret: delivered as secret environment variables, never plain ones
SECRET_SETTINGS = {"erp_token", "payment_provider_token", "cursor_key", "redis_auth"}


def test_every_secret_a_function_reads_exists_and_is_a_setting():
    secrets = {block.name for block in MODULE.of_type("google_secret_manager_secret")}
    for block in MODULE.of_type(FUNCTION):
        for config in block.body.get("service_config", []):
            for secret in hcl.blocks(config, "secret_environment_variables"):
                key = str(secret["key"])
                assert key.startswith("LEDGER_"), f"{block.name}: {key}"
                assert key.removeprefix("LEDGER_").lower() in SECRET_SETTINGS, f"{block.name}: {key} is no secret"
                reference = re.fullmatch(r"\$\{google_secret_manager_secret\.(\w+)\.secret_id\}", str(secret["secret"]))
                assert reference and reference[1] in secrets, f"{block.name}: {key} from {secret['secret']}"


# --- every setting the code reads is set, or safely defaulted ----------------------

ALL = "every function"
# Settings that must be set where they matter, since the default is the local stack's
# (or empty): setting -> which functions need it.
REQUIRED = {
    "db_instance": ALL,  # else a direct TCP connection to 127.0.0.1
    "db_name": ALL,
    "db_user": ALL,  # the function's own IAM database user
    "db_pool_size": ALL,  # must be the size Cloud SQL's max_connections was computed with
    "redis_url": ALL,  # else the local stack's Redis
    "redis_auth": ALL,  # Memorystore AUTH (a secret)
    "redis_ca_cert": ALL,  # Memorystore's server CA, for TLS
    "gcp_project": ALL,  # else the demo project
    "firestore_database": ALL,
    "auth_issuers": "http",  # empty trusts nobody: every call a 401
    "cursor_key": "cursor",  # a random key per instance would break paging across instances
    "erp_url": "exporter",
    "erp_token": "exporter",
    "payment_provider_url": "automation",
    "payment_provider_token": "automation",
    "action_topics": "pushed",  # the publishers' topics are var.action_publishers', not the defaults
    "action_max_deliveries": "pushed",  # must agree with the subscriptions' dead_letter_policy
    "max_event_age_s": "event",  # older events are dropped: must match the retry window set
    # Terraform variables (docs/background-jobs.md): an environment's pacing must reach
    # every background job, or a changed tfvars would change nothing
    **dict.fromkeys(["job_pacing", "job_duty_cap", "job_duty_floor", "job_busy_sessions"], "scheduled"),
}
# Settings whose default is right in Google Cloud too, and why.
SAFE_DEFAULTS = {
    # unused with db_instance (the Cloud SQL connector connects, with its own TLS)
    **dict.fromkeys(["db_host", "db_port", "db_sslmode", "db_sslrootcert"], "unused with the connector"),
    "db_password": "must stay empty: IAM database authentication (config.py refuses one in Google Cloud)",
    "db_iam_auth": "on by default, the only way in Google Cloud",
    "warm_up_on_start": "off is right without minimum instances; functions.tf turns it on with them",
    # names: Terraform creates them from these same defaults (test_function_list.py)
    **dict.fromkeys(
        [
            "events_topic",
            "action_results_topic",
            "actions_dead_letter_topic",
            "automation_dead_letter_topic",
            "automation_replay_topic",
            "notifications_topic",
            "erp_export_tick_topic",
            "erp_reconcile_tick_topic",
            "outbox_sweep_tick_topic",
            "lot_expiry_tick_topic",
            "dormancy_tick_topic",
            "ledger_reconcile_tick_topic",
            "automation_tick_topic",
            "idempotency_collection",
            "action_failures_collection",
            "erp_stream",
        ],
        "a name Terraform creates from this default",
    ),
    # schedules: Cloud Scheduler's come from Terraform variables; these drive the local scheduler
    **dict.fromkeys(
        [
            "erp_export_schedule",
            "erp_reconcile_schedule",
            "outbox_sweep_schedule",
            "lot_expiry_schedule",
            "dormancy_schedule",
            "ledger_reconcile_schedule",
            "automation_schedule",
        ],
        "the local scheduler's; Cloud Scheduler's are Terraform variables",
    ),
    # tuning and policy, the same everywhere (documented beside each field)
    **dict.fromkeys(
        [
            "db_connect_timeout_s",
            "db_statement_timeout_ms",
            "db_conn_max_age_s",
            "reconcile_statement_timeout_ms",
            "posting_attempts",
            "group_commit_max",
            "group_commit_in_flight",
            "redis_timeout_s",
            "lock_ttl_ms",
            "lock_wait_ms",
            "lock_max_waiters",
            "rate_limit_enabled",
            "rate_limit_money_per_s",
            "rate_limit_money_burst",
            "rate_limit_read_per_s",
            "rate_limit_read_burst",
            "rate_limit_admin_per_s",
            "rate_limit_admin_burst",
            "firestore_timeout_s",
            "idempotency_ttl_s",
            "idempotency_wait_s",
            "idempotency_lease_s",
            "events_publish_timeout_s",
            "events_batch",
            "events_linger_ms",
            "erp_timeout_s",
            "erp_batch_events",
            "erp_park_after",
            "erp_retry_base_s",
            "erp_retry_max_s",
            "erp_pass_budget_s",
            "erp_min_rate",  # what bounds a backlog's time to clear (docs/background-jobs.md)
            "lot_expiry_budget_s",  # below its tick's 5 minutes
            "dormancy_budget_s",  # below a ticked function's timeout (functions.tf: 540 s)
            "erp_exclude_migrations",
            "outbox_stuck_after_s",
            "outbox_sweep_min_age_s",
            "chain_extend_budget_s",
            "chain_lag_alert_s",
            "ledger_reconcile_budget_s",  # below a ticked function's timeout (functions.tf: 540 s)
            "usage_batch_max",
            "payment_timeout_s",
            "auth_clock_skew_s",
            "auth_certs_timeout_s",
            "auth_principal_ttl_s",
            "transfers_to_anyone",
            "log_level",
        ],
        "tuning or policy, the same in every environment",
    ),
    "erp_chart_path": "empty: the chart bundled with common/",
}


def test_every_setting_is_either_required_somewhere_or_safe_to_default():
    fields = {field.name for field in dataclasses.fields(Settings)}
    assert not set(REQUIRED) & set(SAFE_DEFAULTS)
    assert sorted(fields - set(REQUIRED) - set(SAFE_DEFAULTS)) == [], "classify each new setting here"
    # a listed field no longer in Settings is stale (max_event_age_s, redis_auth and
    # redis_ca_cert are the contracts issue 17 adds)
    assert sorted(set(SAFE_DEFAULTS) - fields) == []


def needs(setting: str, name: str, cursor_functions: list[str]) -> bool:
    function = FUNCTIONS[name]
    where = REQUIRED[setting]
    return (
        where == ALL
        or (where == "http" and function.trigger == "http")
        or (where == "event" and function.trigger == "event")
        or (where == "pushed" and bool(function.push_topic_settings))
        # a scheduled function (capacity.tf): ticked, and pushed nothing else
        or (where == "scheduled" and bool(function.tick_topic_setting) and not function.push_topic_settings)
        or (where == "cursor" and name in cursor_functions)
        or where == function.database_login
    )


def _literal_names(expression: object, seen: set[str]) -> set[str]:
    """The LEDGER_* names an expression can give, through the locals it uses; a name
    spelled from a for expression's key over a local (LEDGER_${upper(setting)}) counts
    every key of that local."""
    text = str(expression)
    names = set(re.findall(r"\bLEDGER_[A-Z0-9_]+\b(?!\$)", text))
    for _symbol, collection in re.findall(r"for (\w+), \w+ in local\.(\w+) :[^}]*LEDGER_\$\{upper\(\1\)\}", text):
        names |= {f"LEDGER_{key.upper()}" for key in MODULE.locals[collection]}
    for local in set(re.findall(r"\blocal\.(\w+)", text)) - seen:
        seen.add(local)
        value = MODULE.locals.get(local, "")
        names |= set(value) if isinstance(value, dict) and all(k.startswith("LEDGER_") for k in value) else set()
        names |= _literal_names(value, seen)
    return names


def _tick_setting_names(expression: object, name: str) -> set[str]:
    """LEDGER_${upper(local.function_declarations[each.key].<field>)}: the field's value."""
    found = set()
    for field in re.findall(r"LEDGER_\$\{upper\(local\.function_declarations\[each\.key\]\.(\w+)\)\}", str(expression)):
        value = getattr(FUNCTIONS[name], field, None)
        if value:
            found.add(f"LEDGER_{value.upper()}")
    return found


def environment(evaluated) -> dict[str, tuple[set[str], set[str]]]:
    """function -> (plain variable names, secret variable names) it may be given"""
    found = {}
    resource = {block.name: block for block in MODULE.of_type(FUNCTION)}
    for name, block_name in deployed_by(evaluated).items():
        config = resource[block_name].body.get("service_config", [{}])[0]
        plain = _literal_names(config.get("environment_variables", ""), set())
        plain |= _tick_setting_names(config.get("environment_variables", ""), name)
        secret = {str(entry["key"]) for entry in hcl.blocks(config, "secret_environment_variables")}
        found[name] = (plain, secret)
    return found


def test_every_function_is_given_the_settings_it_needs(evaluated):
    """Conditional parts of an environment (cond ? {...} : {}) count as given: the check
    is that nothing needed is missing everywhere, not the exact set."""
    fields = {field.name for field in dataclasses.fields(Settings)}
    missing = []
    for name, (plain, secret) in environment(evaluated).items():
        for setting in sorted(set(REQUIRED) & fields):
            if needs(setting, name, evaluated["cursor_functions"]):
                variable = f"LEDGER_{setting.upper()}"
                given = secret if setting in SECRET_SETTINGS else plain
                if variable not in given:
                    missing.append(f"{name}: {variable}{' (a secret)' if setting in SECRET_SETTINGS else ''}")
        for setting in SECRET_SETTINGS:
            assert f"LEDGER_{setting.upper()}" not in plain, f"{name}: {setting} in plain text"
        assert "LEDGER_DB_PASSWORD" not in plain | secret, name
    assert missing == []


# --- nothing public ----------------------------------------------------------------


def _strings(value: object):
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    else:
        yield str(value)


def test_no_public_principal_anywhere():
    everything = [*MODULE.blocks()]
    public = [
        f"{block.address}: {text}"
        for block in everything
        for text in _strings(block.body)
        if "allUsers" in text or "allAuthenticatedUsers" in text
    ]
    public += [f"local.{name}" for name, value in MODULE.locals.items() if "allUsers" in str(value)]
    public += [f"var.{name}" for name, value in MODULE.variables.items() if "allUsers" in str(value.get("default"))]
    assert public == []


def test_cloud_sql_has_no_public_ip():
    instances = MODULE.of_type("google_sql_database_instance")
    assert instances
    for block in instances:
        for settings in block.body["settings"]:
            ip = settings.get("ip_configuration")
            # ipv4_enabled defaults to true: it must be written out
            assert ip and all(entry.get("ipv4_enabled") is False for entry in ip), block.address


def test_no_instance_has_an_external_address():
    """An access_config gives a VM an external IP, in whichever resource it sits."""

    def has_access_config(body: dict) -> bool:
        return any(
            name == "access_config" or (is_block and has_access_config(value))
            for name, value, is_block in hcl.nested_names(body)
        )

    assert [block.address for block in MODULE.blocks() if has_access_config(block.body)] == []


def test_an_external_address_serves_only_a_nat_for_egress():
    """The ERP allowlists the NAT's static address: egress only. address_type defaults to
    EXTERNAL, so an address without it counts as external."""
    nat_ips = " ".join(str(nat.body.get("nat_ips", "")) for nat in MODULE.of_type("google_compute_router_nat"))
    for block in MODULE.of_type("google_compute_address"):
        if block.body.get("address_type", "EXTERNAL") == "EXTERNAL":
            assert f"google_compute_address.{block.name}." in nat_ips, f"{block.address} is external, not a NAT's"
    for block in MODULE.of_type("google_compute_global_address"):
        assert block.body.get("address_type", "EXTERNAL") == "INTERNAL", f"{block.address} is external"


# --- every dead-letter topic has a subscription -----------------------------------


def _topic_resource(expression: object) -> tuple[str, str] | None:
    found = re.fullmatch(r"\$\{google_pubsub_topic\.(\w+)(?:\[([^\]]+)\])?\.(?:id|name)\}", str(expression))
    return (found[1], found[2] or "") if found else None


def test_every_dead_letter_topic_has_a_subscription():
    """A dead-letter topic: one some dead_letter_policy names, or one named so. Its
    subscription reads the same topics (the same for_each, each.key as the index)."""
    dead_letter = {
        block.name for block in MODULE.of_type("google_pubsub_topic") if "dead_letter" in block.name.lower()
    } | {
        _topic_resource(policy["dead_letter_topic"])[0]
        for block in MODULE.of_type("google_pubsub_subscription")
        for policy in hcl.blocks(block.body, "dead_letter_policy")
        if _topic_resource(policy.get("dead_letter_topic"))
    }
    unread = []
    for topic in sorted(dead_letter):
        topic_block = MODULE.resource("google_pubsub_topic", topic)
        readers = [
            block
            for block in MODULE.of_type("google_pubsub_subscription")
            if (reference := _topic_resource(block.body.get("topic"))) and reference[0] == topic
        ]
        if for_each(topic_block) is not None:  # every one of its topics: the same keys, each its own
            readers = [
                reader
                for reader in readers
                if for_each(reader) == for_each(topic_block) and _topic_resource(reader.body["topic"])[1] == "each.key"
            ]
        if not readers:
            unread.append(topic)
    assert unread == []


# --- every scheduled function's trigger identity can invoke it --------------------


def _function_reference(expression: object) -> tuple[str, str] | None:
    """(function resource, index expression) a push endpoint or a binding's name names"""
    found = re.search(rf"{FUNCTION}\.(\w+)(?:\[([^\]]+)\])?\.service_config\[0\]\.(?:uri|service)", str(expression))
    return (found[1], found[2] or "") if found else None


def _account(expression: object) -> str:
    return hcl.unwrap(expression).removeprefix('"serviceAccount:${').removesuffix('}"')


def invokers(evaluated) -> list[tuple[str, str, str, set[str]]]:
    """(function resource, index expression, account expression, keys) per run.invoker binding"""
    found = []
    for type_ in INVOKER_BINDINGS:
        for block in MODULE.of_type(type_):
            if block.body.get("role") != "roles/run.invoker":
                continue
            target = _function_reference(block.body.get("name"))
            members = block.body.get("members", [block.body.get("member")])
            for member in members if isinstance(members, list) else [members]:
                if target:
                    found.append((target[0], target[1], _account(member), set(evaluated[f"keys {block.name}"])))
    return found


def test_every_event_trigger_identity_may_invoke_its_function(evaluated):
    bindings = invokers(evaluated)
    for block in MODULE.of_type(FUNCTION):
        for trigger in block.body.get("event_trigger", []):
            account = hcl.unwrap(trigger["service_account_email"])
            deployed = set(evaluated[f"entry {block.name}"])
            assert any(
                function == block.name and index == "each.key" and member == account and deployed <= keys
                for function, index, member, keys in bindings
            ), f"{block.address}: {account} has no run.invoker on it"


def test_every_push_subscriptions_identity_may_invoke_the_function_it_pushes_to(evaluated):
    """The OIDC token's account, indexed as the endpoint's function is, has run.invoker
    on that function, for every function the subscriptions push to."""
    bindings = invokers(evaluated)
    for block in MODULE.of_type("google_pubsub_subscription"):
        for push in hcl.blocks(block.body, "push_config"):
            target = _function_reference(push["push_endpoint"])
            assert target, f"{block.address} pushes to no function of this module"
            for token in hcl.blocks(push, "oidc_token"):
                account = hcl.unwrap(token["service_account_email"]).replace(target[1], "INDEX")
                pushed = set(evaluated.get(f"pushed {block.name}", []))
                assert any(
                    function == target[0] and member.replace(index, "INDEX") == account and pushed <= keys
                    for function, index, member, keys in bindings
                ), f"{block.address}: {token['service_account_email']} has no run.invoker on {target[0]}"
            assert hcl.blocks(push, "oidc_token"), f"{block.address} pushes without an OIDC token"


def test_the_checks_read_a_real_module():
    """Guards the checks above against passing on nothing."""
    assert MODULE.of_type(FUNCTION) and MODULE.of_type("google_pubsub_subscription")
    assert Path(hcl.TERRAFORM).is_dir()
