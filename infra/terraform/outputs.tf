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

output "db_iam_user" {
  description = "Grant it the ledger_app role after migrating."
  value       = google_sql_user.functions.name
}

output "db_exporter_iam_user" {
  description = "Grant it the erp_exporter role after migrating."
  value       = google_sql_user.exporter.name
}
