output "function_urls" {
  description = "URL of each HTTP function."
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
