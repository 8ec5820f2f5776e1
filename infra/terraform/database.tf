# Cloud SQL for PostgreSQL 15, private IP only, IAM database authentication, reached only
# through the Cloud SQL connectors. Migrations (db/) run as the schema's owner and create
# the functions' roles; each database login's IAM user is then granted its role.
# What each setting is for: docs/infrastructure.md, "Cloud SQL".

resource "google_sql_database_instance" "ledger" {
  name                = "${var.name}-pg"
  region              = var.region
  database_version    = "POSTGRES_15"
  deletion_protection = true # Terraform's: a plan that would destroy it fails
  depends_on          = [google_project_service.enabled, google_service_networking_connection.private_services]

  settings {
    # Enterprise edition: it takes the custom and shared-core tiers
    edition           = "ENTERPRISE"
    tier              = var.db_tier
    availability_type = var.db_availability
    disk_autoresize   = true
    # the API's own: nobody deletes it by console or gcloud either
    deletion_protection_enabled = true
    # only the Cloud SQL connectors (with IAM auth) may connect, never a bare client
    connector_enforcement = "REQUIRED"

    ip_configuration {
      ipv4_enabled    = false
      private_network = google_compute_network.ledger.id
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = "18:00" # UTC: 01:00 in Jakarta, before the maintenance window
      location                       = coalesce(var.db_backup_location, var.region)
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = var.db_transaction_log_days
      backup_retention_settings {
        retained_backups = var.db_backups_retained
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = var.db_maintenance_window.day
      hour         = var.db_maintenance_window.hour
      update_track = var.db_maintenance_window.update_track
    }

    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }
    # capacity.tf: what every function can open, plus the reserves
    database_flags {
      name  = "max_connections"
      value = tostring(local.max_connections)
    }
    # A session idle inside an open transaction would hold the ledger's horizon (the hash
    # chain, the ERP export) and its locks: ended after 2 minutes (in ms), as
    # db/schema/05_sessions.sql sets for the database.
    database_flags {
      name  = "idle_in_transaction_session_timeout"
      value = "120000"
    }
    # What an auditor reads the database by: who connected, from where, and left; who
    # waited on a lock and how long; checkpoints; DDL; slow statements; pgaudit's records.
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    # Every autovacuum that takes over a second, with what it scanned, froze and left:
    # how an operator sees that vacuum falls behind the append-only tables, whose own
    # settings (vacuum after a fixed number of inserts, freeze what it visits) are
    # storage parameters set by migration 0018 (docs/database.md#vacuum-and-freezing).
    database_flags {
      name  = "log_autovacuum_min_duration"
      value = "1000"
    }
    # Autovacuum's I/O budget per round, shared by its workers (default -1: the
    # vacuum_cost_limit of 200). Insert-driven vacuums that freeze as they go dirty each
    # new page once; the default budget is for spinning disks, Cloud SQL's are SSDs.
    database_flags {
      name  = "autovacuum_vacuum_cost_limit"
      value = "1000"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = tostring(var.db_log_min_duration_ms)
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
    database_flags {
      name  = "pgaudit.log"
      value = var.db_pgaudit_log
    }
    # object-level audit of the ledger tables (the migrations job grants this role)
    database_flags {
      name  = "pgaudit.role"
      value = var.db_pgaudit_role
    }

    insights_config {
      query_insights_enabled = true
    }
  }

  lifecycle {
    precondition {
      condition     = local.db_tier_memory_mb > 0
      error_message = "Cloud SQL tier ${var.db_tier}: its memory isn't in its name; set var.db_tier_memory_mb."
    }
    precondition {
      condition     = local.max_connections <= local.db_connection_ceiling
      error_message = "The functions may open ${local.max_connections} connections (capacity.tf: max instances x pool size, summed, plus reserves), more than ${var.db_tier} holds at ${var.db_memory_mb_per_connection} MB each (${local.db_connection_ceiling}): choose a larger db_tier, or lower the max instances or pool sizes."
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

# The operators' login (var.db_operator_group): a Cloud SQL IAM group, named by the
# group's email. Nobody logs in as the group itself: each member logs in as their own IAM
# user and inherits the group's database role, which the migrations job grants
# ledger_operator (jobs.tf's LEDGER_DB_LOGIN_ROLES), the role the runbooks and
# `python -m common.ops` act as. Connecting takes the same two project roles as a
# function's login.
resource "google_sql_user" "operators" {
  count    = var.db_operator_group == null ? 0 : 1
  name     = var.db_operator_group
  instance = google_sql_database_instance.ledger.name
  type     = "CLOUD_IAM_GROUP"
}

resource "google_project_iam_member" "operators" {
  for_each   = toset(var.db_operator_group == null ? [] : ["roles/cloudsql.client", "roles/cloudsql.instanceUser"])
  project    = var.project_id
  role       = each.key
  member     = "group:${var.db_operator_group}"
  depends_on = [google_project_service.enabled]
}

# Data Access audit logs for Cloud SQL: who read or changed the instance's configuration
# and data through Google's APIs (connections by the connectors, exports, user changes),
# beside the Admin Activity logs Google always keeps. pgaudit records the statements.
resource "google_project_iam_audit_config" "cloudsql" {
  project = var.project_id
  service = "cloudsql.googleapis.com"
  audit_log_config {
    log_type = "ADMIN_READ"
  }
  audit_log_config {
    log_type = "DATA_READ"
  }
  audit_log_config {
    log_type = "DATA_WRITE"
  }
  depends_on = [google_project_service.enabled]
}

# A read replica (var.db_read_replica: off in dev, on in prod), for what reads the whole
# history and writes nothing: the hash chain's verify and the operators' reports, which
# would otherwise take the primary's CPU and cache from live traffic for minutes. No
# function is given its address: every scheduled job writes on the primary in the same
# transaction or statement as its reads (docs/background-jobs.md, "A read replica").
# Asynchronous, in the primary's region, private IP only, IAM logins as on the primary
# (the users and roles replicate with the data; the operators' project roles are
# project-wide). It keeps no backups of its own: the primary's are the ledger's.
resource "google_sql_database_instance" "read_replica" {
  count                = var.db_read_replica ? 1 : 0
  name                 = "${var.name}-pg-replica"
  region               = var.region
  database_version     = google_sql_database_instance.ledger.database_version
  master_instance_name = google_sql_database_instance.ledger.name
  # It holds nothing the primary doesn't: a plan may replace it, and teardown deletes it
  # first (infra/teardown.py), as a primary with a replica can't be deleted.
  deletion_protection = false

  replica_configuration {
    failover_target = false
  }

  settings {
    edition           = "ENTERPRISE"
    tier              = local.db_read_replica_tier
    availability_type = "ZONAL"
    disk_autoresize   = true
    # only the Cloud SQL connectors (with IAM auth) may connect, never a bare client
    connector_enforcement = "REQUIRED"

    ip_configuration {
      ipv4_enabled    = false
      private_network = google_compute_network.ledger.id
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    database_flags {
      name  = "cloudsql.iam_authentication"
      value = "on"
    }
    # Postgres runs a hot standby only with max_connections at least its primary's
    # (capacity.tf); the operators' reserve is what connects.
    database_flags {
      name  = "max_connections"
      value = tostring(local.db_read_replica_max_connections)
    }
    # A whole-history read takes minutes; a change it conflicts with (vacuum removing rows
    # its snapshot may still see) waits this long before the read is cancelled, the
    # replica lagging meanwhile. hot_standby_feedback stays off: the primary's vacuum is
    # never held back by a reader here.
    database_flags {
      name  = "max_standby_streaming_delay"
      value = tostring(var.db_read_replica_max_standby_delay_s * 1000)
    }
    database_flags {
      name  = "max_standby_archive_delay"
      value = tostring(var.db_read_replica_max_standby_delay_s * 1000)
    }
    database_flags {
      name  = "idle_in_transaction_session_timeout"
      value = "120000"
    }
    # the primary's log flags: who connected and read what
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = tostring(var.db_log_min_duration_ms)
    }
    # no vacuum runs on a standby (it replays the primary's); these are the primary's, for
    # the day the replica is promoted
    database_flags {
      name  = "log_autovacuum_min_duration"
      value = "1000"
    }
    database_flags {
      name  = "autovacuum_vacuum_cost_limit"
      value = "1000"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
    database_flags {
      name  = "pgaudit.log"
      value = var.db_pgaudit_log
    }
    database_flags {
      name  = "pgaudit.role"
      value = var.db_pgaudit_role
    }

    insights_config {
      query_insights_enabled = true
    }
  }

  lifecycle {
    precondition {
      condition     = local.db_read_replica_tier_memory_mb > 0
      error_message = "Cloud SQL tier ${local.db_read_replica_tier}: its memory isn't in its name; choose a db-custom-<vCPUs>-<MB> tier for db_read_replica_tier."
    }
    precondition {
      condition     = local.db_read_replica_connections <= local.db_read_replica_connection_ceiling
      error_message = "The read replica's readers may open ${local.db_read_replica_connections} connections, more than ${local.db_read_replica_tier} holds at ${var.db_memory_mb_per_connection} MB each (${local.db_read_replica_connection_ceiling})."
    }
  }
}
