# Memorystore for the per-wallet usage locks. Locks only spare Postgres from queueing;
# correctness never depends on them, so a failover costs throughput, not money.

resource "google_redis_instance" "locks" {
  name               = "${var.name}-locks"
  region             = var.region
  tier               = var.redis_tier
  memory_size_gb     = var.redis_memory_gb
  redis_version      = "REDIS_7_2"
  authorized_network = google_compute_network.ledger.id
  connect_mode       = "PRIVATE_SERVICE_ACCESS"
  depends_on         = [google_service_networking_connection.private_services]
}
