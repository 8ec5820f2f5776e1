# Cloud SQL for PostgreSQL 15, private IP only, IAM database authentication.
# Migrations (db/) run as the built-in admin and create the ledger_app role; the
# functions' IAM user is then granted ledger_app (see README.md beside this file).

resource "google_sql_database_instance" "ledger" {
  name                = "${var.name}-pg"
  region              = var.region
  database_version    = "POSTGRES_15"
  deletion_protection = true
  depends_on          = [google_service_networking_connection.private_services]

  settings {
    tier              = var.db_tier
    availability_type = var.db_availability
    disk_autoresize   = true

    ip_configuration {
      ipv4_enabled    = false
      private_network = google_compute_network.ledger.id
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = 7
    }

    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }

    database_flags {
      name  = "max_connections"
      value = "400"
    }

    insights_config {
      query_insights_enabled = true
    }
  }
}

resource "google_sql_database" "ledger" {
  name     = "ledger"
  instance = google_sql_database_instance.ledger.name
}

resource "google_sql_user" "functions" {
  # For a service account, the IAM database user is its email without ".gserviceaccount.com".
  name     = trimsuffix(google_service_account.functions.email, ".gserviceaccount.com")
  instance = google_sql_database_instance.ledger.name
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

resource "google_sql_user" "access_admin" {
  name     = trimsuffix(google_service_account.access_admin.email, ".gserviceaccount.com")
  instance = google_sql_database_instance.ledger.name
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

resource "google_sql_user" "exporter" {
  name     = trimsuffix(google_service_account.exporter.email, ".gserviceaccount.com")
  instance = google_sql_database_instance.ledger.name
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}
