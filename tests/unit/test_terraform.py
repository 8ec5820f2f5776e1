"""Structural checks of infra/terraform that need no provider download (the functions it
deploys: test_function_list.py; what holds whichever resources spell it, such as no
public invoker and every trigger able to invoke: test_terraform_structure.py). Who may
call what (auth.tf) is plain locals, so it is also
evaluated with `terraform console`, as Terraform would read it."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from common.config import Settings
from infra import hcl
from infra.functions import discover, http_functions

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "infra" / "terraform"
MODULE = hcl.terraform()
# The checks below that still match source text predate python-hcl2 here; new checks
# read MODULE (and test_terraform_structure.py holds the generic ones).
SOURCE = "\n".join(path.read_text() for path in sorted(TERRAFORM.glob("*.tf")))
HTTP_FUNCTIONS = http_functions(discover())
# The callers the issue names (variables.tf's defaults); operators call everything.
END_USER_FUNCTIONS = ["allocate", "reclaim", "transfer", "wallets"]
SERVICE_ONLY_FUNCTIONS = ["access", "addon", "bonus", "topup", "usage", "void"]
PROJECT = "demo-project"
REGION = "asia-southeast2"  # variables.tf's default
needs_terraform = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def block(kind: str, *labels: str) -> str:
    """The body of a top-level block, e.g. block("resource", "google_cloudfunctions2_function", "http")."""
    head = " ".join([kind, *(f'"{label}"' for label in labels)])
    found = re.search(re.escape(head) + r" \{\n(.*?)\n\}", SOURCE, re.S)
    assert found, f"no {head} block"
    return found.group(1)


def terraform_locals(tmp_path: Path, expression: str, *variables: str):
    """An expression over auth.tf's locals, as Terraform evaluates it with the variables'
    defaults (and `variables`, as -var arguments). auth.tf needs no provider, so it is
    evaluated alone, beside function_list.tf, variables.tf and a link to functions/."""
    module = tmp_path / "infra" / "terraform"
    module.mkdir(parents=True)
    for name in ("function_list.tf", "variables.tf", "auth.tf"):
        shutil.copy(TERRAFORM / name, module)
    (tmp_path / "functions").symlink_to(REPO / "functions")
    (tmp_path / "docs").symlink_to(REPO / "docs")  # the gateway's routes: docs/openapi.json
    arguments = [f"-var=project_id={PROJECT}", *(f"-var={v}" for v in variables)]
    result = subprocess.run(
        ["terraform", "console", *arguments],
        cwd=module,
        input=f"jsonencode({expression})",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(json.loads(result.stdout))


def test_terraform_is_formatted():
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed")
    result = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def ttl_fields() -> dict[str, str]:
    """collection -> field, for every Firestore field with a TTL policy"""
    return {
        str(block.body["collection"]): str(block.body["field"])
        for block in MODULE.of_type("google_firestore_field")
        if hcl.blocks(block.body, "ttl_config")
    }


def test_idempotency_records_have_a_ttl_on_expire_at():
    assert ttl_fields()[Settings().idempotency_collection] == "expire_at"


def test_every_firestore_collection_of_the_ledger_expires_its_records():
    settings = Settings()
    expiring = ttl_fields()
    assert {settings.idempotency_collection, settings.action_failures_collection} <= set(expiring)


def test_database_uses_iam_authentication_and_private_ip():
    for instance in MODULE.of_type("google_sql_database_instance"):
        settings = instance.body["settings"][0]
        flags = {str(flag["name"]): str(flag["value"]) for flag in hcl.blocks(settings, "database_flags")}
        assert flags["cloudsql.iam_authentication"] == "on"
        assert settings["ip_configuration"][0]["ipv4_enabled"] is False
    users = MODULE.of_type("google_sql_user")
    # IAM users only (the operators' login is an IAM group): no built-in user, no password
    assert users and all(user.body["type"] in {"CLOUD_IAM_SERVICE_ACCOUNT", "CLOUD_IAM_GROUP"} for user in users)
    assert not [user.address for user in users if "password" in user.body or "password_wo" in user.body]


def test_autovacuum_is_logged_and_given_an_ssd_budget():
    """docs/database.md#vacuum-and-freezing: the per-table settings are the schema's
    (migration 0018); the instance logs slow autovacuums and raises their I/O budget."""
    for instance in MODULE.of_type("google_sql_database_instance"):
        settings = instance.body["settings"][0]
        flags = {str(flag["name"]): str(flag["value"]) for flag in hcl.blocks(settings, "database_flags")}
        assert flags["log_autovacuum_min_duration"] == "1000"
        assert int(flags["autovacuum_vacuum_cost_limit"]) > 200


def test_no_broad_roles_are_granted():
    broad = ("roles/owner", "roles/editor")
    granted = [
        block.address
        for block in MODULE.blocks()
        if block.type.endswith(("_iam_member", "_iam_binding")) and str(block.body.get("role")) in broad
    ]
    assert granted == []
    assert not [role for grant in MODULE.locals.values() for role in broad if role in str(grant)]


def test_an_empty_function_list_stops_the_plan():
    """Run from a copy without ../../functions, the list would be empty and a plan would
    destroy every function: a precondition refuses it."""
    flat = re.sub(r"\s+", " ", SOURCE)
    assert "precondition { condition = length(local.function_names) > 0" in flat


def test_every_http_function_gets_the_issuers_it_trusts():
    http = block("resource", "google_cloudfunctions2_function", "http")
    assert "for_each = local.http_functions" in flat(http)
    assert "LEDGER_AUTH_ISSUERS = local.auth_issuers[each.key]" in flat(http)


@needs_terraform
def test_services_tokens_are_for_the_function_url_and_end_users_only_where_they_call(tmp_path):
    issuers = {name: json.loads(value) for name, value in terraform_locals(tmp_path, "local.auth_issuers").items()}
    assert sorted(issuers) == HTTP_FUNCTIONS
    for name, trusted in issuers.items():
        url = f"https://{REGION}-{PROJECT}.cloudfunctions.net/{name.replace('_', '-')}"
        google = {
            "issuer": "https://accounts.google.com",
            "certs_url": "https://www.googleapis.com/oauth2/v1/certs",
            "audiences": [url],
        }
        end_users = {
            "issuer": f"https://securetoken.google.com/{PROJECT}",
            "certs_url": "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com",
            "audiences": [PROJECT],
        }
        assert trusted == ([google, end_users] if name in END_USER_FUNCTIONS else [google]), name
        assert all(issuer["certs_url"].startswith("https://") for issuer in trusted)


@needs_terraform
def test_trusted_audiences_and_the_end_users_project_can_be_set(tmp_path):
    issuers = terraform_locals(
        tmp_path,
        "local.auth_issuers",
        'service_token_audiences={transfer=["https://transfer-abc-et.a.run.app"]}',
        "identity_platform_project=apps-project",
    )
    transfer = json.loads(issuers["transfer"])
    assert transfer[0]["audiences"][1:] == ["https://transfer-abc-et.a.run.app"]
    assert transfer[1]["issuer"] == "https://securetoken.google.com/apps-project"
    assert transfer[1]["audiences"] == ["apps-project"]


def test_a_function_stops_the_apply_when_google_gives_it_another_url():
    """Services mint tokens for the URL Google reports; the function must accept it."""
    http = flat(block("resource", "google_cloudfunctions2_function", "http"))
    assert "postcondition { condition = contains(local.service_token_audiences[each.key], self.url)" in http
    assert "value = { for name, fn in google_cloudfunctions2_function.http : name => fn.url }" in flat(SOURCE)


def test_every_http_function_has_an_invoker_binding_on_its_cloud_run_service():
    callers = flat(block("resource", "google_cloud_run_v2_service_iam_member", "callers"))
    assert "for_each = local.invoker_bindings" in callers
    assert "name = google_cloudfunctions2_function.http[each.value.function].service_config[0].service" in callers
    assert 'role = "roles/run.invoker"' in callers
    assert 'member = "serviceAccount:${local.caller_emails[each.value.caller]}"' in callers
    # a gen2 function's invoker role is Cloud Run's; the Cloud Functions one is for 1st gen
    assert "roles/cloudfunctions.invoker" not in SOURCE


@needs_terraform
def test_each_named_service_may_call_its_functions_and_operators_every_one(tmp_path):
    invokers = terraform_locals(tmp_path, "local.function_invokers")
    assert sorted(invokers) == HTTP_FUNCTIONS
    assert all("operators" in callers for callers in invokers.values())
    named = {name: sorted(set(callers) - {"operators"}) for name, callers in invokers.items()}
    assert named == {
        "access": [],
        "topup": ["payments"],
        "addon": ["payments"],
        "usage": ["metering"],
        **{name: ["back_office"] for name in ("bonus", "void", "wallets", "allocate", "reclaim", "transfer")},
    }


@needs_terraform
def test_callers_can_be_existing_service_accounts(tmp_path):
    """A caller named in caller_emails keeps its account; the others are created here."""
    callers = terraform_locals(tmp_path, "local.service_callers")
    assert sorted(callers) == ["back_office", "metering", "operators", "payments"]
    accounts = flat(block("resource", "google_service_account", "callers"))
    assert "for_each = setsubtract(local.service_callers, keys(var.caller_emails))" in accounts
    emails = (
        "merge({ for caller, account in google_service_account.callers : caller => account.email }, var.caller_emails)"
    )
    assert f"caller_emails = {emails}" in flat(SOURCE)


def test_a_function_without_callers_stops_the_plan():
    """A new HTTP folder must say who calls it; a name that is no function is a typo."""
    policy = flat(block("resource", "terraform_data", "caller_policy"))
    assert "condition = length(setsubtract(local.http_functions, keys(var.function_callers))) == 0" in policy
    assert "condition = length(setsubtract(keys(var.function_callers), local.http_functions)) == 0" in policy


@needs_terraform
def test_service_only_functions_keep_the_iam_check(tmp_path):
    reading = terraform_locals(
        tmp_path,
        "{end_users = local.end_user_functions, ingress = local.function_ingress,"
        " max_instances = local.function_max_instances}",
        "end_user_function_max_instances=10",
        "function_max_instances=50",
    )
    assert sorted(reading["end_users"]) == END_USER_FUNCTIONS
    assert not set(reading["end_users"]) & set(SERVICE_ONLY_FUNCTIONS)
    assert sorted(SERVICE_ONLY_FUNCTIONS + END_USER_FUNCTIONS) == HTTP_FUNCTIONS
    for name in HTTP_FUNCTIONS:
        end_users = name in END_USER_FUNCTIONS
        assert reading["ingress"][name] == ("ALLOW_ALL" if end_users else "ALLOW_INTERNAL_AND_GCLB"), name
        assert reading["max_instances"][name] == (10 if end_users else 50), name
    http = flat(block("resource", "google_cloudfunctions2_function", "http"))
    assert "ingress_settings = local.function_ingress[each.key]" in http
    assert "max_instance_count = local.function_max_instances_all[each.key]" in http


@needs_terraform
def test_the_functions_that_sign_cursors_are_read_from_their_code(tmp_path):
    assert terraform_locals(tmp_path, "local.cursor_functions") == ["wallets"]


def test_the_functions_that_sign_cursors_read_their_key_from_secret_manager():
    functions = flat(block("resource", "google_cloudfunctions2_function", "http"))
    assert 'for_each = contains(local.cursor_functions, each.key) ? ["cursor"] : []' in functions
    assert 'key = "LEDGER_CURSOR_KEY"' in functions
    assert "secret = google_secret_manager_secret.cursor_key.secret_id" in functions
    access = flat(block("resource", "google_secret_manager_secret_iam_member", "cursor_key"))
    assert "google_service_account.database_login[each.key].email" in access


def test_each_function_runs_as_its_database_logins_identity_and_user():
    """No shared identity: a function's service account and IAM database user are its
    deploy.json login's (function_list.tf database_logins), one of each per login."""
    login_of = "local.function_declarations[each.key].database_login"
    for name in ("http", "pushed"):
        function = flat(block("resource", "google_cloudfunctions2_function", name))
        assert f"service_account_email = google_service_account.database_login[{login_of}].email" in function
        assert f"LEDGER_DB_USER = google_sql_user.database_login[{login_of}].name" in function
    assert "for_each = local.database_logins" in flat(block("resource", "google_service_account", "database_login"))
    assert "for_each = local.database_logins" in flat(block("resource", "google_sql_user", "database_login"))
    assert (
        "google_service_account.functions" not in SOURCE
        and "google_sql_user.functions" not in SOURCE
        and "LEDGER_DB_PASSWORD" not in SOURCE
    )


def test_every_pushed_topic_has_a_push_subscription_with_retries_and_dead_letters():
    """Each (pushed function, topic) of function_list.tf's push_subscriptions: pushed to the
    function's URL with its own account's OIDC token, retried 10 s to 600 s, dead-lettered
    after var.action_max_deliveries to its function's topic, and never expiring."""
    pushed = flat(block("resource", "google_pubsub_subscription", "pushed"))
    assert "for_each = local.push_subscriptions" in pushed
    uri = "google_cloudfunctions2_function.pushed[each.value.function].service_config[0].uri"
    assert f'push_endpoint = "${{{uri}}}/projects/${{var.project_id}}/topics/${{each.value.topic}}"' in pushed
    assert (
        "oidc_token { service_account_email = google_service_account.pushers[each.value.function].email"
        f" audience = {uri} }}"
    ) in pushed
    assert 'retry_policy { minimum_backoff = "10s" maximum_backoff = "600s" }' in pushed
    assert (
        "dead_letter_policy { dead_letter_topic = google_pubsub_topic.dead_letters[each.value.dead_letter_topic].id"
        " max_delivery_attempts = var.action_max_deliveries }"
    ) in pushed
    assert 'expiration_policy { ttl = "" }' in pushed
    assert "ack_deadline_seconds = local.push_timeout_s[each.value.function]" in pushed
    assert "timeout_seconds = local.push_timeout_s[each.key]" in flat(
        block("resource", "google_cloudfunctions2_function", "pushed")
    )
    # no Eventarc trigger, whose subscription could not be dead-lettered
    assert "event_trigger" not in block("resource", "google_cloudfunctions2_function", "pushed")
    max_deliveries = flat(block("variable", "action_max_deliveries"))
    assert (
        "default = 5" in max_deliveries
        and "var.action_max_deliveries >= 5 && var.action_max_deliveries <= 100" in max_deliveries
    )


def test_every_dead_letter_topic_has_a_subscription_that_keeps_what_it_gets():
    for kind in ("google_pubsub_topic", "google_pubsub_subscription"):
        assert "for_each = local.dead_letter_topics" in flat(block("resource", kind, "dead_letters"))
    subscription = flat(block("resource", "google_pubsub_subscription", "dead_letters"))
    assert "topic = google_pubsub_topic.dead_letters[each.key].id" in subscription
    assert 'expiration_policy { ttl = "" }' in subscription and "push_config" not in subscription
    # Pub/Sub's service agent moves messages there: it publishes on the dead-letter topics
    # and acknowledges on every subscription it moves them from
    agent = "member = local.pubsub_service_agent"
    publishes = flat(block("resource", "google_pubsub_topic_iam_member", "dead_letters_by_pubsub"))
    assert "for_each = local.dead_letter_topics" in publishes and 'role = "roles/pubsub.publisher"' in publishes
    assert agent in publishes
    subscribes = flat(block("resource", "google_pubsub_subscription_iam_member", "dead_letter_sources_by_pubsub"))
    assert "for_each = local.push_subscriptions" in subscribes and 'role = "roles/pubsub.subscriber"' in subscribes
    assert agent in subscribes  # which agent: test_terraform_first_apply.py


def test_subscriptions_never_expire():
    """A subscription left without traffic 31 days is deleted by default: a quiet topic's
    messages would then be lost."""
    subscriptions = re.findall(r'resource "google_pubsub_subscription" "(\w+)"', SOURCE)
    assert sorted(subscriptions) == ["action_results", "dead_letters", "pushed"]
    for name in subscriptions:
        assert 'expiration_policy { ttl = "" }' in flat(block("resource", "google_pubsub_subscription", name)), name


def test_a_pushed_function_is_invoked_by_its_pushing_account_alone():
    invoker_blocks = re.findall(r'resource "google_cloud_run_v2_service_iam_member" "(\w+)"', SOURCE)
    on_pushed = [
        name
        for name in invoker_blocks
        if "google_cloudfunctions2_function.pushed["
        in block("resource", "google_cloud_run_v2_service_iam_member", name)
    ]
    assert on_pushed == ["pushers"]
    pushers = flat(block("resource", "google_cloud_run_v2_service_iam_member", "pushers"))
    assert "for_each = local.push_functions" in pushers
    assert (
        'role = "roles/run.invoker" member = "serviceAccount:${google_service_account.pushers[each.key].email}"'
        in pushers
    )
    assert "for_each = local.push_functions" in flat(block("resource", "google_service_account", "pushers"))
    function = flat(block("resource", "google_cloudfunctions2_function", "pushed"))
    assert 'ingress_settings = "ALLOW_INTERNAL_ONLY"' in function


def test_each_publisher_publishes_to_its_own_topic_and_reads_its_own_results():
    topic = flat(block("resource", "google_pubsub_topic_iam_member", "action_publishers"))
    assert "for_each = var.action_publishers" in topic
    assert "topic = google_pubsub_topic.action_topics[each.key].id" in topic
    assert 'role = "roles/pubsub.publisher" member = "serviceAccount:${local.publisher_emails[each.key]}"' in topic
    results = flat(block("resource", "google_pubsub_subscription", "action_results"))
    # the actions function sets source_topic to the topic's full name (common/messages.py)
    topic_name = "projects/${var.project_id}/topics/${each.value.topic}"
    assert f'filter = "attributes.source_topic = \\"{topic_name}\\""' in results
    reader = flat(block("resource", "google_pubsub_subscription_iam_member", "action_results"))
    assert "subscription = google_pubsub_subscription.action_results[each.key].id" in reader
    assert 'role = "roles/pubsub.subscriber" member = "serviceAccount:${local.publisher_emails[each.key]}"' in reader


def test_no_login_publishes_project_wide():
    """Publisher rights are granted on the topics each login publishes to (iam.tf), so a
    compromised function can't publish actions as a publishing service, nor results."""
    logins = re.search(r"database_logins = \{(.*?)\n  \}", SOURCE, re.S).group(1)
    assert "roles/pubsub" not in logins
    assert not re.search(r'resource "google_project_iam_member"[^\n]*\{[^}]*roles/pubsub', SOURCE)
    publishes = re.search(r"login_publishes = \{(.*?)\n  \}", SOURCE, re.S).group(1)
    assert re.search(
        r"^\s+automation = concat\(local.setting_topics.events_topic, local.setting_topics.notifications_topic, "
        r"local.setting_topics.automation_dead_letter_topic\)$",
        publishes,
        re.M,
    )
    grants = flat(block("resource", "google_pubsub_topic_iam_member", "database_login"))
    assert "topic = local.topic_ids[each.value.topic]" in grants and 'role = "roles/pubsub.publisher"' in grants


def test_the_messages_login_alone_publishes_results_and_dead_letters():
    """Else any money function (a poster) could forge an action's result, or a dead letter
    the operator replays."""
    publishes = re.search(r"login_publishes = \{(.*?)\n  \}", SOURCE, re.S).group(1)
    topics = dict(re.findall(r"^\s+(\w+)\s+= (.*)$", publishes, re.M))
    for setting in ("action_results_topic", "actions_dead_letter_topic"):
        assert [login for login, granted in topics.items() if f"local.setting_topics.{setting}" in granted] == [
            "messages"
        ], setting
    # an event too old to act on goes to automation's own dead letters (common/cloud_events.py)
    assert [login for login, granted in topics.items() if "automation_dead_letter_topic" in granted] == ["automation"]
    assert topics["poster"] == "local.setting_topics.events_topic"
    logins = flat(re.search(r"database_logins = \{(.*?)\n  \}", SOURCE, re.S).group(1))
    assert 'messages = { account_id = "ledger-messages", db_role = "ledger_messages"' in logins
    assert json.loads((REPO / "functions" / "actions" / "deploy.json").read_text())["database_login"] == "messages"


def test_the_automation_login_alone_reads_the_payment_providers_token():
    function = flat(block("resource", "google_cloudfunctions2_function", "pushed"))
    assert 'database_login == "automation" ? ["payment"] : []' in function
    assert 'key = "LEDGER_PAYMENT_PROVIDER_TOKEN"' in function
    assert "secret = google_secret_manager_secret.payment_provider_token.secret_id" in function
    readers = re.findall(r"secret_id = google_secret_manager_secret.payment_provider_token.id", SOURCE)
    assert len(readers) == 1
    reader = flat(block("resource", "google_secret_manager_secret_iam_member", "payment_provider_token"))
    assert 'member = "serviceAccount:${google_service_account.database_login["automation"].email}"' in reader
    # every topic a Settings field names reaches the pushed functions as that setting's variable
    env = 'for setting, topics in local.setting_topics : "LEDGER_${upper(setting)}" => join(",", topics)'
    assert env in flat(SOURCE)
