# Who may invoke the functions. A gen2 function runs as a Cloud Run service, and Cloud Run
# checks the caller's Google-signed ID token against roles/run.invoker on that service
# (the Cloud Functions Invoker role covers 1st gen functions only). Each calling service
# has a service account: one given in var.caller_emails, or one Terraform creates here.
# Which functions each may call: var.function_callers (auth.tf reads it).

resource "google_service_account" "callers" {
  for_each     = setsubtract(local.service_callers, keys(var.caller_emails))
  account_id   = "ledger-${replace(each.key, "_", "-")}"
  display_name = "Calls the wallet ledger as ${each.key}"
  depends_on   = [google_project_service.enabled]
}

locals {
  caller_emails = merge({ for caller, account in google_service_account.callers : caller => account.email }, var.caller_emails)
}

# People (operators) act as a caller's service account: Cloud Run and the functions both
# want a token whose audience is the function's URL, which only a service account's token
# can carry (`gcloud auth print-identity-token --impersonate-service-account=EMAIL
# --audiences=URL --include-email`).
resource "google_service_account_iam_member" "token_creators" {
  for_each = merge([
    for caller, members in var.caller_token_creators : { for member in members : "${caller} ${member}" => { caller = caller, member = member } }
  ]...)
  service_account_id = "projects/-/serviceAccounts/${local.caller_emails[each.value.caller]}"
  role               = "roles/iam.serviceAccountOpenIdTokenCreator"
  member             = each.value.member
}

resource "google_cloud_run_v2_service_iam_member" "callers" {
  for_each = local.invoker_bindings
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.http[each.value.function].service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${local.caller_emails[each.value.caller]}"
}

# The functions end users call: API Gateway (gateway.tf) checks end users' Identity
# Platform tokens and calls the function as its own service account, which is the one
# identity besides the named services that may invoke them: nothing is public.
resource "google_cloud_run_v2_service_iam_member" "gateway" {
  for_each = local.end_user_functions
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.http[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.gateway.email}"
}

# Each Pub/Sub-triggered function's push subscriptions (pubsub.tf), its ticks' included,
# carry OIDC tokens of its own pushing account, which may invoke that function and nothing else, and no other
# identity may invoke it: no caller, no operator, no other function's pushes.
resource "google_service_account" "pushers" {
  for_each     = local.push_functions
  account_id   = substr("ledger-push-${replace(each.key, "_", "-")}", 0, 30)
  display_name = "Pub/Sub pushes to the wallet ledger's ${each.key} function"
  depends_on   = [google_project_service.enabled]
}

resource "google_cloud_run_v2_service_iam_member" "pushers" {
  for_each = local.push_functions
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.pushed[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.pushers[each.key].email}"
}

# Pub/Sub's service agent mints those tokens. Projects made since April 2021 let it
# without a grant; older ones need this one, given here on the pushing accounts alone.
resource "google_service_account_iam_member" "pushers_tokens_by_pubsub" {
  for_each           = local.push_functions
  service_account_id = google_service_account.pushers[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# The caller policy against the folders, at plan time (terraform_data is built in).
resource "terraform_data" "caller_policy" {
  lifecycle {
    precondition {
      condition     = length(setsubtract(local.http_functions, keys(var.function_callers))) == 0
      error_message = "No callers for ${join(", ", setsubtract(local.http_functions, keys(var.function_callers)))} in var.function_callers: say which services (and whether end users) call each HTTP function."
    }
    precondition {
      condition     = length(setsubtract(keys(var.function_callers), local.http_functions)) == 0
      error_message = "var.function_callers names ${join(", ", setsubtract(keys(var.function_callers), local.http_functions))}, which is not an HTTP function under functions/."
    }
    precondition {
      condition     = length(setsubtract(keys(var.service_token_audiences), local.http_functions)) == 0
      error_message = "var.service_token_audiences names ${join(", ", setsubtract(keys(var.service_token_audiences), local.http_functions))}, which is not an HTTP function under functions/."
    }
    precondition {
      condition     = length(setsymmetricdifference(keys(local.push_functions), keys(var.max_event_age_s))) == 0
      error_message = "var.max_event_age_s must name every Pub/Sub-triggered function under functions/ and nothing else; it differs on ${join(", ", setsymmetricdifference(keys(local.push_functions), keys(var.max_event_age_s)))}."
    }
    precondition {
      condition     = length(local.unknown_topic_settings) == 0
      error_message = "A deploy.json names ${join(", ", local.unknown_topic_settings)}, which function_list.tf's setting_topics does not know: add the topics that Settings field names there."
    }
    precondition {
      condition     = length(setsubtract(concat(keys(var.caller_emails), keys(var.caller_token_creators)), local.service_callers)) == 0
      error_message = "var.caller_emails or var.caller_token_creators names ${join(", ", setsubtract(concat(keys(var.caller_emails), keys(var.caller_token_creators)), local.service_callers))}, which calls no function."
    }
  }
}
