# Cloud SQL (private IP) and Memorystore live on a private VPC; functions reach them
# through a Serverless VPC Access connector, for private ranges only.

resource "google_compute_network" "ledger" {
  name                    = "${var.name}-vpc"
  auto_create_subnetworks = false
}

resource "google_compute_subnetwork" "ledger" {
  name                     = "${var.name}-subnet"
  network                  = google_compute_network.ledger.id
  region                   = var.region
  ip_cidr_range            = "10.20.0.0/24"
  private_ip_google_access = true
}

resource "google_compute_global_address" "private_services" {
  name          = "${var.name}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = 16
  network       = google_compute_network.ledger.id
}

resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.ledger.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
}

resource "google_vpc_access_connector" "functions" {
  name          = "ledger-fn-connector"
  region        = var.region
  network       = google_compute_network.ledger.name
  ip_cidr_range = "10.8.0.0/28"
  min_instances = 2
  max_instances = 10
}
