"""Every resource and data source in infra/terraform, and every attribute and block in
them (nested and dynamic blocks too), exists in the google provider's schema, as the
pinned @cdktf/provider-google bindings describe it (infra/provider_schema.py). Terraform
would say so at `validate`, which needs the provider: here it is checked offline.

The schema is installed by `make test` (npm ci --prefix infra/schema); without it these
tests fail, never skip, so CI can't pass without checking."""

import pytest

from infra import hcl
from infra.provider_schema import PACKAGES, problems, provider_version

MODULE = hcl.terraform()


def provider_of(block: hcl.Block) -> str:
    """google, or google-beta when the block says `provider = google-beta[.alias]`."""
    declared = str(block.body.get("provider", "google")).removeprefix("${").removesuffix("}")
    return declared.split(".")[0]


def schema_problems(text: str) -> list[str]:
    module = hcl.parse(text)
    found = []
    for kind in ("resource", "data"):
        for entry in module.get(kind, []):
            for type_, named in entry.items():
                for body in named.values():
                    declared = hcl.Block(kind, type_, "x", body, "-")
                    found.extend(problems(kind, type_, body, provider_of(declared)))
    return found


def test_every_resource_attribute_and_block_is_in_the_providers_schema():
    wrong = [
        f"{block.file}: {problem}"
        for block in MODULE.blocks()
        for problem in problems(block.kind, block.type, block.body, provider_of(block))
    ]
    assert wrong == []


def test_every_provider_a_block_uses_is_pinned():
    assert {provider_of(block) for block in MODULE.blocks()} <= set(PACKAGES)


def test_the_schema_is_the_release_terraform_is_pinned_to():
    """The bindings describe one release (6.50.0): the Terraform must ask for that one."""
    required = hcl.parse((hcl.TERRAFORM / "versions.tf").read_text())["terraform"][0]["required_providers"][0]
    for provider, pinned in required.items():
        if provider in PACKAGES:
            assert pinned["version"] == f"~> {provider_version(provider)}", provider


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        # a misspelled attribute at the top
        (
            'resource "google_pubsub_topic" "t" {\n  name = "t"\n  message_retention = "600s"\n}\n',
            "google_pubsub_topic.message_retention: no such attribute",
        ),
        # in a nested block, two levels down
        (
            'resource "google_pubsub_subscription" "s" {\n  name = "s"\n  topic = "t"\n'
            '  push_config {\n    push_endpoint = "https://x"\n'
            '    oidc_token {\n      service_account = "a@b"\n    }\n  }\n}\n',
            "google_pubsub_subscription.push_config.oidc_token.service_account: no such attribute",
        ),
        # in a dynamic block's content
        (
            'resource "google_cloudfunctions2_function" "f" {\n  name = "f"\n  location = "r"\n'
            '  service_config {\n    dynamic "secret_environment_variables" {\n      for_each = []\n'
            '      content {\n        key = "K"\n        secret_name = "s"\n      }\n    }\n  }\n}\n',
            "service_config.secret_environment_variables.secret_name: no such attribute",
        ),
        # a block the resource doesn't have
        (
            'resource "google_sql_database_instance" "i" {\n  settings {\n    tier = "x"\n'
            "    ip_config {\n      ipv4_enabled = false\n    }\n  }\n}\n",
            "google_sql_database_instance.settings.ip_config: no such block",
        ),
        # a resource type the provider doesn't have
        ('resource "google_pubsub_topics" "t" {\n  name = "t"\n}\n', "resource google_pubsub_topics: the google"),
        # a beta-only resource without the beta provider
        (
            'resource "google_api_gateway_api" "a" {\n  api_id = "a"\n}\n',
            "resource google_api_gateway_api: the google provider has no such",
        ),
        # a data source's attribute
        ('data "google_project" "p" {\n  project = "x"\n}\n', "google_project.project: no such attribute"),
        # a block written as an attribute
        (
            'resource "google_pubsub_topic" "t" {\n  name = "t"\n  schema_settings = "x"\n}\n',
            "google_pubsub_topic.schema_settings: a block, written as an attribute",
        ),
    ],
)
def test_a_misspelled_name_is_caught(text, complaint):
    found = schema_problems(text)
    assert len(found) == 1 and complaint in found[0], found


def test_what_the_schema_has_passes():
    text = (
        'resource "google_api_gateway_api" "a" {\n  provider = google-beta\n  api_id = "a"\n}\n'
        'resource "google_pubsub_subscription" "s" {\n  for_each = {}\n  name = "s"\n  topic = "t"\n'
        '  labels = { a = "b" }\n  push_config {\n    push_endpoint = "https://x"\n'
        '    oidc_token {\n      service_account_email = "a@b"\n    }\n  }\n'
        '  dead_letter_policy {\n    dead_letter_topic = "d"\n  }\n'
        "  lifecycle {\n    prevent_destroy = true\n  }\n}\n"
        'data "google_project" "p" {\n  project_id = "x"\n}\n'
    )
    assert schema_problems(text) == []
