# A service account per database login (function_list.tf's database_logins), with only
# what its functions use: each logs in to Cloud SQL as its own IAM database user, granted
# its own database role (db/schema/99_grants.sql), so a compromised money function can't
# mark events, change wallets or move the ERP export, and so on.

resource "google_service_account" "database_login" {
  for_each     = local.database_logins
  account_id   = each.value.account_id
  display_name = "Wallet ledger functions logging in as ${each.key}"
  depends_on   = [google_project_service.enabled]
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

# The topics each login publishes to, on those topics only (function_list.tf's
# setting_topics): every posting's event goes to ledger-events after commit (the
# sweeper's and the expiry job's too); the actions function alone (its own login, so
# no HTTP money function can forge a result) publishes outcomes and moves malformed
# messages to its dead letters at once; the automation function sends notices, and moves
# a ledger event too old to act on to its own dead letters (common/cloud_events.py).
locals {
  login_publishes = {
    poster     = local.setting_topics.events_topic
    messages   = concat(local.setting_topics.events_topic, local.setting_topics.action_results_topic, local.setting_topics.actions_dead_letter_topic)
    relay      = local.setting_topics.events_topic
    jobs       = local.setting_topics.events_topic
    automation = concat(local.setting_topics.events_topic, local.setting_topics.notifications_topic, local.setting_topics.automation_dead_letter_topic)
  }
}

resource "google_pubsub_topic_iam_member" "database_login" {
  for_each = merge([
    for login, topics in local.login_publishes : { for topic in topics : "${login} ${topic}" => { login = login, topic = topic } }
  ]...)
  topic  = local.topic_ids[each.value.topic]
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.database_login[each.value.login].email}"
}

# Cloud Build builds each function as this account (functions.tf build_config), so a
# first apply doesn't depend on the project's default compute account or its roles. It
# has the three roles Google's docs ask of a functions' build account
# (https://cloud.google.com/run/docs/configuring/services/build-service-account): Logs
# Writer for the build's logs, Artifact Registry Writer for the function's image, and
# Storage Object Admin to fetch the source and store the build's images. All three at
# project level: gen2 copies the bundle into Google's own gcf-v2-sources-<number>-<region>
# bucket and keeps images in the gcf-artifacts repository, both created by Google at the
# first deploy, so neither can be bound to beforehand. Storage Object Admin is granted on
# the project under a condition, though: only Google's gcf-v2-* buckets and ours, as the
# Terraform state bucket (in the same project) holds Memorystore's AUTH string, and a
# build runs third-party packages' install code.
resource "google_service_account" "build" {
  account_id   = "ledger-build"
  display_name = "Builds the wallet ledger's functions"
  depends_on   = [google_project_service.enabled]
}

resource "google_project_iam_member" "build" {
  for_each = toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])
  project  = var.project_id
  role     = each.key
  member   = "serviceAccount:${google_service_account.build.email}"
}

resource "google_project_iam_member" "build_storage" {
  project = var.project_id
  role    = "roles/storage.objectAdmin"
  member  = "serviceAccount:${google_service_account.build.email}"
  condition {
    title       = "functions-build-buckets"
    description = "Google's gcf-v2-sources/gcf-v2-uploads buckets and the ledger's sources bucket, never the Terraform state's."
    # the sources bucket by its exact name, or its objects ("<bucket>/objects/..."): a bare
    # prefix would also match another bucket whose name begins with it
    expression = "resource.name.startsWith(\"projects/_/buckets/gcf-v2-\") || resource.name == \"projects/_/buckets/${google_storage_bucket.sources.name}\" || resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.sources.name}/\")"
  }
}

# The functions that sign history cursors read the cursor key, through their logins' identities.
resource "google_secret_manager_secret_iam_member" "cursor_key" {
  for_each  = toset([for name in local.cursor_functions : local.function_declarations[name].database_login])
  secret_id = google_secret_manager_secret.cursor_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.database_login[each.key].email}"
}

# Each secret is read by the one login whose functions use it, and by no other. (The
# Memorystore AUTH string's secret, redis.tf, is read by the logins whose functions use
# Redis: its accessor grants belong beside it, one per login, as these are.)

# The ERP export and reconciliation alone read the ERP's credential.
resource "google_secret_manager_secret_iam_member" "erp_credential" {
  secret_id = google_secret_manager_secret.erp_credential.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.database_login["exporter"].email}"
}

# The automation function alone reads the payment provider's token.
resource "google_secret_manager_secret_iam_member" "payment_provider_token" {
  secret_id = google_secret_manager_secret.payment_provider_token.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.database_login["automation"].email}"
}
