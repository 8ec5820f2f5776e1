# Cloud SQL for PostgreSQL 15, private IP only, IAM database authentication.
# Migrations (db/) run as the schema's owner and create the functions' roles; each
# database login's IAM user is then granted its role (see README.md beside this file).

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

    # A session idle inside an open transaction would hold the ledger's horizon (the
    # hash chain, the ERP export) and its locks: ended after 2 minutes (in ms), as
    # db/schema/05_sessions.sql sets for the database.
    database_flags {
      name  = "idle_in_transaction_session_timeout"
      value = "120000"
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

# One IAM database user per database login: for a service account, its email without
# ".gserviceaccount.com". None has a password, and none is the schema's owner.
resource "google_sql_user" "database_login" {
  for_each = local.database_logins
  name     = trimsuffix(google_service_account.database_login[each.key].email, ".gserviceaccount.com")
  instance = google_sql_database_instance.ledger.name
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}
