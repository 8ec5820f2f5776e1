# One service account for the functions, with only what they use.

resource "google_service_account" "functions" {
  account_id   = "ledger-functions"
  display_name = "Wallet ledger functions"
}

locals {
  function_roles = [
    "roles/cloudsql.client",
    "roles/cloudsql.instanceUser",
    "roles/datastore.user",
    "roles/pubsub.publisher",
  ]
}

resource "google_project_iam_member" "functions" {
  for_each = toset(local.function_roles)
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.functions.email}"
}

# The ERP export and reconciliation run as their own identity: their database user is
# granted erp_exporter (db/schema/99_grants.sql), which may move the export's state and cannot post
# money; the functions' user (ledger_app) can do neither of the export's writes.
resource "google_service_account" "exporter" {
  account_id   = "ledger-erp-exporter"
  display_name = "Wallet ledger ERP export"
}

resource "google_project_iam_member" "exporter" {
  for_each = toset(["roles/cloudsql.client", "roles/cloudsql.instanceUser"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.exporter.email}"
}

# The operators' access function runs as its own identity: its database user is granted
# ledger_access (db/schema/99_grants.sql), the only role that changes principals, grants
# and roles' limits or decides pending changes; the other functions' user can do none of it.
resource "google_service_account" "access_admin" {
  account_id   = "ledger-access"
  display_name = "Wallet ledger callers' administration"
}

resource "google_project_iam_member" "access_admin" {
  for_each = toset(["roles/cloudsql.client", "roles/cloudsql.instanceUser"])
  project  = var.project_id
  role     = each.value
  member   = "serviceAccount:${google_service_account.access_admin.email}"
}

resource "google_secret_manager_secret_iam_member" "cursor_key" {
  secret_id = google_secret_manager_secret.cursor_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.functions.email}"
}

resource "google_secret_manager_secret_iam_member" "erp_credential" {
  secret_id = google_secret_manager_secret.erp_credential.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.exporter.email}"
}
