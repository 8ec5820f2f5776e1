resource "google_pubsub_topic" "ledger_events" {
  name                       = "ledger-events"
  message_retention_duration = "604800s"
}

resource "google_pubsub_topic" "ledger_events_dead_letter" {
  name = "ledger-events-dead-letter"
}

resource "google_secret_manager_secret" "erp_credential" {
  secret_id = "erp-credential"
  replication {
    auto {}
  }
  # The value is added out of band (gcloud secrets versions add); never in code.
}

# The HMAC key of history cursors (docs/api.md, "Paging"), read by the wallets function.
# The value is added out of band, at least 32 random bytes:
#   openssl rand -base64 48 | gcloud secrets versions add cursor-key --data-file=-
resource "google_secret_manager_secret" "cursor_key" {
  secret_id = "cursor-key"
  replication {
    auto {}
  }
}

# Cloud Scheduler ticks: one topic and one job per scheduled function.
locals {
  ticks = {
    "erp-export-tick"    = var.erp_export_schedule
    "outbox-sweep-tick"  = "* * * * *"
    "erp-reconcile-tick" = var.erp_reconcile_schedule
    "lot-expiry-tick"    = var.lot_expiry_schedule
    "automation-tick"    = "* * * * *"
  }
}

resource "google_pubsub_topic" "ticks" {
  for_each = local.ticks
  name     = each.key
}

resource "google_cloud_scheduler_job" "ticks" {
  for_each  = local.ticks
  name      = "${var.name}-${each.key}"
  region    = var.region
  schedule  = each.value
  time_zone = "Etc/UTC"
  pubsub_target {
    topic_name = google_pubsub_topic.ticks[each.key].id
    data       = base64encode("tick")
  }
}
