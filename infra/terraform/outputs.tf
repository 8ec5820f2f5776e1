output "function_urls" {
  description = "URL of each HTTP function: call it there, with a token minted for this URL as the audience."
  value       = { for name, fn in google_cloudfunctions2_function.http : name => fn.url }
}

output "function_run_urls" {
  description = "The run.app URL of each HTTP function's Cloud Run service (a token for it is accepted only if listed in var.service_token_audiences)."
  value       = { for name, fn in google_cloudfunctions2_function.http : name => fn.service_config[0].uri }
}

output "db_connection_name" {
  value = google_sql_database_instance.ledger.connection_name
}

output "db_iam_users" {
  description = "Each database login's IAM user, and the database role to grant it after migrating."
  value       = { for login, user in google_sql_user.database_login : login => { user = user.name, role = local.database_logins[login].db_role } }
}

output "caller_service_accounts" {
  description = "Each calling service's account: its email, and for those created here the unique ID its tokens carry as `sub` (a principal is https://accounts.google.com and that ID)."
  value = {
    for caller, email in local.caller_emails :
    caller => { email = email, unique_id = try(google_service_account.callers[caller].unique_id, null) }
  }
}

output "end_user_functions" {
  description = "The functions end users call, through API Gateway (output gateway_url)."
  value       = local.end_user_functions
}

output "action_topic_principals" {
  description = "Each publishing service's topic as the principal the actions function acts for (register it with its grants: issuer \"pubsub\", this subject), and the subscription its results arrive on."
  value = {
    for service, publisher in var.action_publishers :
    service => { issuer = "pubsub", subject = google_pubsub_topic.action_topics[service].id, results_subscription = google_pubsub_subscription.action_results[service].name }
  }
}

output "dead_letter_subscriptions" {
  description = "Each Pub/Sub-pushed function's dead-letter subscription (make dead-letters reads the actions function's)."
  value       = { for name, pushed in local.push_functions : name => google_pubsub_subscription.dead_letters[pushed.dead_letter_topic].name }
}

output "migrations" {
  description = "The migrations job, its image (without tag), its identity's IAM database user and the account its image builds run as (infra/deploy.py reads these)."
  value = {
    job           = google_cloud_run_v2_job.migrations.name
    image         = local.migrations_image_base
    database_user = google_sql_user.migrator.name
    builder       = google_service_account.migrations_builder.email
    instance      = google_sql_database_instance.ledger.name
    sources       = google_storage_bucket.sources.name
  }
}

output "db_read_replica_connection_name" {
  description = "The read replica's connection name, for LEDGER_DB_INSTANCE in an operator's whole-history read (docs/background-jobs.md); null without a replica."
  value       = one(google_sql_database_instance.read_replica[*].connection_name)
}
