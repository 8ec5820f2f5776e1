# A service account per database login (function_list.tf's database_logins), with only
# what its functions use: each logs in to Cloud SQL as its own IAM database user, granted
# its own database role (db/schema/99_grants.sql), so a compromised money function can't
# mark events, change wallets or move the ERP export, and so on.

resource "google_service_account" "database_login" {
  for_each     = local.database_logins
  account_id   = each.value.account_id
  display_name = "Wallet ledger functions logging in as ${each.key}"
}

locals {
  database_login_project_roles = merge([
    for login, declared in local.database_logins : {
      for role in concat(["roles/cloudsql.client", "roles/cloudsql.instanceUser"], declared.project_roles) :
      "${login} ${role}" => { login = login, role = role }
    }
  ]...)
}

resource "google_project_iam_member" "database_login" {
  for_each = local.database_login_project_roles
  project  = var.project_id
  role     = each.value.role
  member   = "serviceAccount:${google_service_account.database_login[each.value.login].email}"
}

# The identity Eventarc pushes Cloud Scheduler's ticks as (invokers.tf gives it the
# invoker role on the ticked functions); it has no other role.
resource "google_service_account" "functions" {
  account_id   = "ledger-functions"
  display_name = "Wallet ledger ticks"
}

# The functions that sign history cursors read the cursor key, through their logins' identities.
resource "google_secret_manager_secret_iam_member" "cursor_key" {
  for_each  = toset([for name in local.cursor_functions : local.function_declarations[name].database_login])
  secret_id = google_secret_manager_secret.cursor_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.database_login[each.key].email}"
}

# The ERP export and reconciliation alone read the ERP's credential.
resource "google_secret_manager_secret_iam_member" "erp_credential" {
  secret_id = google_secret_manager_secret.erp_credential.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.database_login["exporter"].email}"
}
