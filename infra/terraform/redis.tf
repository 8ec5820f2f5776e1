# Memorystore for the per-wallet usage locks and the callers' rate limits. Locks only
# spare Postgres from queueing; correctness never depends on them, so a failover costs
# throughput, not money. AUTH and TLS (server authentication): only a client holding
# the AUTH string, talking to the server its CA vouches for, gets in.

resource "google_redis_instance" "locks" {
  name                    = "${var.name}-locks"
  region                  = var.region
  tier                    = var.redis_tier
  memory_size_gb          = var.redis_memory_gb
  redis_version           = "REDIS_7_2"
  authorized_network      = google_compute_network.ledger.id
  connect_mode            = "PRIVATE_SERVICE_ACCESS"
  auth_enabled            = true
  transit_encryption_mode = "SERVER_AUTHENTICATION"

  maintenance_policy {
    weekly_maintenance_window {
      day = var.redis_maintenance_window.day
      start_time {
        hours   = var.redis_maintenance_window.hour
        minutes = 0
        seconds = 0
        nanos   = 0
      }
    }
  }

  depends_on = [google_project_service.enabled, google_service_networking_connection.private_services]
}

# The AUTH string, as the functions read it: a secret, mounted as LEDGER_REDIS_AUTH. It
# is also in Terraform's state (the instance's auth_string, and this version's data), as
# every attribute is: the reason the state bucket is locked down (docs/infrastructure.md).
resource "google_secret_manager_secret" "redis_auth" {
  secret_id = "redis-auth"
  replication {
    auto {}
  }
  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_version" "redis_auth" {
  secret      = google_secret_manager_secret.redis_auth.id
  secret_data = google_redis_instance.locks.auth_string
}

locals {
  # Settings (common/config.py) of a function that uses Redis; LEDGER_REDIS_AUTH comes
  # from the secret. TLS listens on the instance's port (6378); the CA certificates are
  # every one the server may present (more than one while Google rotates them).
  redis_env = {
    LEDGER_REDIS_URL     = "rediss://${google_redis_instance.locks.host}:${google_redis_instance.locks.port}/0"
    LEDGER_REDIS_CA_CERT = join("\n", [for ca in google_redis_instance.locks.server_ca_certs : ca.cert])
  }
}

# Only the logins whose functions use Redis may read its AUTH string.
resource "google_secret_manager_secret_iam_member" "redis_auth" {
  for_each  = local.redis_logins
  secret_id = google_secret_manager_secret.redis_auth.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.database_login[each.key].email}"
}
