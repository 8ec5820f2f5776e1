"""On a fresh project nothing may call an API before google_project_service.enabled has
turned it on: every resource and data source in infra/terraform waits for it, directly
(depends_on) or through what it references or depends on (Terraform creates a
resource after everything its expressions name, locals included). Read with python-hcl2
(infra/hcl.py); the edges are the expressions' references, so a new resource that names
nothing already ordered fails here until it gets its depends_on."""

from __future__ import annotations

from infra import hcl

MODULE = hcl.terraform()
APIS = "google_project_service.enabled"

# What calls no API that google_project_service.enabled turns on.
NO_API = {
    APIS: "enables the APIs itself (through serviceusage, on in every project)",
    "terraform_data.caller_policy": "Terraform's own, built in: no provider, no API",
}


def edges(block: hcl.Block, module: hcl.Module) -> set[str]:
    """The resources and data sources a block waits for: those its body names, directly or
    through the locals it reads (each local through the locals it reads)."""
    names = {address for _, address in hcl.references(block.body, module)}
    for local in hcl.needed_locals(str(block.body), module):
        names |= {address for _, address in hcl.references(module.locals[local], module)}
    return names - {block.address}


def waits_for_apis(module: hcl.Module) -> dict[str, bool]:
    """address -> whether it is created after google_project_service.enabled."""
    graph = {block.address: edges(block, module) for block in module.blocks()}
    known: dict[str, bool] = {APIS: True}

    def reaches(address: str, path: tuple[str, ...]) -> bool:
        if address not in known:
            known[address] = any(
                reaches(target, (*path, address)) for target in graph.get(address, ()) if target not in path
            )
        return known[address]

    for address in graph:
        reaches(address, ())
    return known


def test_every_resource_waits_for_the_apis():
    waiting = waits_for_apis(MODULE)
    blocks = {block.address for block in MODULE.blocks()}
    assert set(NO_API) <= blocks, "an allow-listed block no longer exists: drop it from NO_API"
    early = sorted(address for address in blocks - set(NO_API) if not waiting[address])
    assert not early, f"these may call an API before it is enabled (add depends_on = [{APIS}]): {early}"


def test_the_check_sees_a_resource_that_names_nothing(tmp_path):
    # the check itself: a lone secret, a secret ordered through a local, and a lone one
    (tmp_path / "main.tf").write_text(
        'resource "google_project_service" "enabled" {\n  service = "x"\n}\n'
        'resource "google_service_account" "ordered" {\n  account_id = "a"\n'
        "  depends_on = [google_project_service.enabled]\n}\n"
        "locals {\n  email = google_service_account.ordered.email\n}\n"
        'resource "google_project_iam_member" "through_local" {\n  member = local.email\n}\n'
        'resource "google_secret_manager_secret" "alone" {\n  secret_id = "s"\n}\n'
    )
    waiting = waits_for_apis(hcl.read(tmp_path))
    assert waiting["google_service_account.ordered"] and waiting["google_project_iam_member.through_local"]
    assert not waiting["google_secret_manager_secret.alone"]


def test_the_pubsub_service_agent_is_made_to_exist_before_it_is_granted_anything():
    """A brand-new project may not have its Pub/Sub service agent yet: a grant to its
    spelled-out email would fail. google_project_service_identity creates it first."""
    identity = MODULE.resource("google_project_service_identity", "pubsub").body
    assert identity["service"] == "pubsub.googleapis.com"
    assert identity["provider"] == "google-beta"  # the resource is google-beta's only
    assert MODULE.locals["pubsub_service_agent"] == "${google_project_service_identity.pubsub.member}"
    granted = [block for block in MODULE.blocks() if "local.pubsub_service_agent" in str(block.body.get("member"))]
    assert len(granted) == 3, [block.address for block in granted]


def test_a_function_deploys_after_its_identity_may_read_its_secrets_and_use_cloud_sql():
    """A revision whose identity can't read a secret it mounts fails to start ("Permission
    denied on secret"); one without its login's roles can't reach Cloud SQL. Every
    secret-accessor grant and the logins' project roles come before every function."""
    wanted = {f"${{{block.address}}}" for block in MODULE.of_type("google_secret_manager_secret_iam_member")}
    wanted.add("${google_project_iam_member.database_login}")
    assert len(wanted) >= 5  # cursor key, ERP credential, payment token, Redis AUTH, roles
    for function in MODULE.of_type("google_cloudfunctions2_function"):
        assert wanted <= set(function.body["depends_on"]), (function.address, wanted - set(function.body["depends_on"]))
