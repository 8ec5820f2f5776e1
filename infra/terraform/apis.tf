# The Google APIs the ledger uses, enabled by Terraform so that a fresh project needs no
# console clicks. Kept enabled on destroy: turning an API off would break whatever else
# in the project uses it, and it costs nothing while unused.
#
# Every resource in this folder waits for google_project_service.enabled (all of it: one
# edge, no per-API bookkeeping that could drift): by its own depends_on, or through a
# resource it references that has one (tests/unit/test_terraform_first_apply.py checks every one;
# a -target also applies what its target depends on, so the deploy's stage 1 enables the
# APIs before its secrets and log-based metrics). google_project_service returns once the enable
# operation is done, so no sleep is needed after it (docs/infrastructure.md, "First apply").

locals {
  apis = toset([
    "apigateway.googleapis.com", # the end users' front (gateway.tf)
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com", # builds each function and the migrations image
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com", # project IAM bindings and audit configs
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",  # VPC, router, NAT, egress address
    "eventarc.googleapis.com", # a prerequisite of Cloud Functions gen2 (event triggers)
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com", # ID tokens minted for callers and pushes
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "redis.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "servicecontrol.googleapis.com",    # API Gateway
    "servicemanagement.googleapis.com", # API Gateway
    "servicenetworking.googleapis.com", # private services access for Cloud SQL and Redis
    "sqladmin.googleapis.com",
    "storage.googleapis.com", # the bundles' bucket
    "vpcaccess.googleapis.com",
  ])
}

resource "google_project_service" "enabled" {
  for_each           = local.apis
  project            = var.project_id
  service            = each.key
  disable_on_destroy = false
}
