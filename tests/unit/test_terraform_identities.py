"""Who may invoke what, and where a failing message goes, read from infra/terraform parsed
with python-hcl2: nothing public, every push subscription's token may invoke the function
it pushes to, every dead-letter topic has a subscription, and API Gateway alone fronts
the functions end users call."""

import json
import re
from pathlib import Path

import hcl2
import pytest
from hcl2 import SerializationOptions

from tests.unit.test_terraform import END_USER_FUNCTIONS, PROJECT, REGION, needs_terraform, terraform_locals

TERRAFORM = Path(__file__).resolve().parents[2] / "infra" / "terraform"
OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
PARSED = {
    path.name: hcl2.loads(path.read_text(), serialization_options=OPTIONS) for path in sorted(TERRAFORM.glob("*.tf"))
}


def resources(kind: str) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for document in PARSED.values():
        for entry in document.get("resource", []):
            found.update(entry.get(kind, {}))
    return found


def strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


def referenced(expression: str, kind: str) -> str:
    """The name of the `kind` resource an expression refers to: ${kind.NAME[...]...}."""
    found = re.fullmatch(r"\$\{" + re.escape(kind) + r"\.(\w+)\[.*", expression)
    assert found, f"{expression} refers to no {kind}"
    return found.group(1)


def test_nothing_is_public():
    for name, document in PARSED.items():
        for value in strings(document):
            assert "allUsers" not in value and "allAuthenticatedUsers" not in value, name


def test_every_push_subscriptions_token_may_invoke_the_function_it_pushes_to():
    subscriptions = {n: s for n, s in resources("google_pubsub_subscription").items() if "push_config" in s}
    assert subscriptions, "no push subscription"
    invokers = resources("google_cloud_run_v2_service_iam_member")
    for name, subscription in subscriptions.items():
        push = subscription["push_config"][0]
        function = referenced(push["push_endpoint"], "google_cloudfunctions2_function")
        account = referenced(push["oidc_token"][0]["service_account_email"], "google_service_account")
        # the subscription pushes each.value.function's messages as that function's own account
        assert (
            "[each.value.function]" in push["push_endpoint"]
            and "[each.value.function]" in (push["oidc_token"][0]["service_account_email"])
        ), name
        granted = [
            invoker
            for invoker in invokers.values()
            if invoker["role"] == "roles/run.invoker"
            and invoker["name"].startswith(f"${{google_cloudfunctions2_function.{function}[each.key]")
            and invoker["member"] == f"serviceAccount:${{google_service_account.{account}[each.key].email}}"
        ]
        assert granted, f"{name}: {account} may not invoke {function}"
        # over every function the subscriptions push to, and every account they push as
        function_for_each = resources("google_cloudfunctions2_function")[function]["for_each"]
        assert all(invoker["for_each"] == function_for_each for invoker in granted), name
        assert resources("google_service_account")[account]["for_each"] == function_for_each, name


def test_every_dead_letter_topic_has_a_subscription():
    subscriptions = resources("google_pubsub_subscription")
    topics = resources("google_pubsub_topic")
    dead_lettered = {
        referenced(policy["dead_letter_topic"], "google_pubsub_topic")
        for subscription in subscriptions.values()
        for policy in subscription.get("dead_letter_policy", [])
    }
    assert dead_lettered, "no subscription has a dead-letter policy"
    for topic in dead_lettered:
        readers = [
            s
            for s in subscriptions.values()
            if s["topic"] == f"${{google_pubsub_topic.{topic}[each.key].id}}"
            and s["for_each"] == topics[topic]["for_each"]
        ]
        assert readers, f"google_pubsub_topic.{topic} has no subscription of its own"
    # a topic named dead letter that nothing dead-letters to is one nobody reads
    for name, topic in topics.items():
        assert "dead-letter" not in str(topic.get("name", "")), name


def test_every_pubsub_triggered_function_is_pushed_with_retries_and_dead_letters():
    functions = resources("google_cloudfunctions2_function")
    assert sorted(functions) == ["http", "pushed"]  # no Eventarc-triggered function
    assert all("event_trigger" not in function for function in functions.values())
    pushed = resources("google_pubsub_subscription")["pushed"]
    assert pushed["retry_policy"] and pushed["dead_letter_policy"]
    assert functions["pushed"]["service_config"][0]["timeout_seconds"] == "${local.push_timeout_s[each.key]}"
    assert pushed["ack_deadline_seconds"] == "${local.push_timeout_s[each.value.function]}"
    assert "LEDGER_MAX_EVENT_AGE_S" in str(functions["pushed"]["service_config"][0]["environment_variables"])


def test_every_function_is_built_by_the_build_account_with_the_roles_googles_docs_ask():
    """https://cloud.google.com/run/docs/configuring/services/build-service-account: Logs
    Writer, Artifact Registry Writer and Storage Object Admin (gen2 stages the source in
    Google's gcf-v2-sources bucket), the last never on the Terraform state's bucket."""
    for name, function in resources("google_cloudfunctions2_function").items():
        assert function["build_config"][0]["service_account"] == "${google_service_account.build.id}", name
        assert "${google_project_iam_member.build_storage}" in function["depends_on"], name
    grants = resources("google_project_iam_member")
    assert grants["build"]["for_each"] == '${toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])}'
    storage = grants["build_storage"]
    assert storage["role"] == "roles/storage.objectAdmin"
    assert storage["member"] == "serviceAccount:${google_service_account.build.email}"
    assert storage["condition"][0]["expression"] == (
        'resource.name.startsWith("projects/_/buckets/gcf-v2-")'
        ' || resource.name == "projects/_/buckets/${google_storage_bucket.sources.name}"'
        ' || resource.name.startsWith("projects/_/buckets/${google_storage_bucket.sources.name}/")'
    )


def test_the_gateway_alone_invokes_the_functions_end_users_call_besides_named_services():
    gateway = resources("google_cloud_run_v2_service_iam_member")["gateway"]
    assert gateway["for_each"] == "${local.end_user_functions}"
    assert gateway["member"] == "serviceAccount:${google_service_account.gateway.email}"
    config = resources("google_api_gateway_api_config")["ledger"]
    assert config["gateway_config"][0]["backend_config"][0]["google_service_account"] == (
        "${google_service_account.gateway.email}"
    )
    assert config["openapi_documents"][0]["document"][0]["contents"] == "${base64encode(local.gateway_openapi)}"


@needs_terraform
def test_the_gateway_routes_every_end_user_operation_of_the_api_to_its_function(tmp_path):
    document = json.loads(terraform_locals(tmp_path, "local.gateway_openapi"))
    api = json.loads((TERRAFORM.parents[1] / "docs" / "openapi.json").read_text())["paths"]
    expected = {
        (path, method): operation["tags"][0]
        for path, item in api.items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "operationId" in operation and operation["tags"][0] in END_USER_FUNCTIONS
    }
    routed = {
        (path, method): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    }
    assert set(routed) == set(expected)
    for (path, method), operation in routed.items():
        url = f"https://{REGION}-{PROJECT}.cloudfunctions.net/{expected[(path, method)]}"
        assert operation["x-google-backend"] == {
            "address": url,
            "path_translation": "APPEND_PATH_TO_ADDRESS",
            "jwt_audience": url,
            "deadline": 30,  # the functions' own timeout; the gateway's default is 15 s
        }
        assert operation["security"] == [{"identity_platform": []}]
        declared = [p["name"] for p in document["paths"][path].get("parameters", [])]
        assert declared == re.findall(r"\{(\w+)\}", path), path
    security = document["securityDefinitions"]["identity_platform"]
    assert security["x-google-issuer"] == f"https://securetoken.google.com/{PROJECT}"
    assert security["x-google-audiences"] == PROJECT
    assert document["swagger"] == "2.0"


@needs_terraform
@pytest.mark.parametrize("function", ["outbox_sweeper", "erp_reconcile", "actions"])
def test_every_triggered_function_has_a_max_event_age(tmp_path, function):
    ages = terraform_locals(tmp_path, "{ages = var.max_event_age_s, pushed = keys(local.push_functions)}")
    assert sorted(ages["ages"]) == sorted(ages["pushed"])
    assert ages["ages"][function] >= 60
