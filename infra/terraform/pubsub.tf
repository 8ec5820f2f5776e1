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
