# Firestore (native mode) holds idempotency records; a TTL policy on expire_at deletes
# them (typically within a day of expiry; the code also compares expire_at itself).

resource "google_firestore_database" "ledger" {
  name        = "(default)"
  location_id = var.region
  type        = "FIRESTORE_NATIVE"
  # The idempotency records are what makes a retried money request exactly-once: nobody
  # deletes the database by mistake, and a bad write can be read back as it was, up to
  # 7 days ago.
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  depends_on                        = [google_project_service.enabled]
}

resource "google_firestore_field" "idempotency_ttl" {
  database   = google_firestore_database.ledger.name
  collection = "idempotency_keys"
  field      = "expire_at"

  ttl_config {}

  # expire_at is only compared, never queried: no single-field indexes for it.
  index_config {}
}

# Why a pushed message failed (common/adapters/firestore_failures.py): kept as long as
# the dead letter it explains, then deleted by the same kind of TTL policy.
resource "google_firestore_field" "action_failures_ttl" {
  database   = google_firestore_database.ledger.name
  collection = "action_failures"
  field      = "expire_at"

  ttl_config {}

  index_config {}
}
