# Cloud SQL (private IP) and Memorystore live on a private VPC; functions reach them
# through a Serverless VPC Access connector. The functions that call outside Google (the
# ERP, the payment provider) send all their traffic through it too, out of a Cloud NAT
# with one reserved address: the one IP the ERP's allowlist needs (output erp_egress_ip).

resource "google_compute_network" "ledger" {
  name                    = "${var.name}-vpc"
  auto_create_subnetworks = false
  depends_on              = [google_project_service.enabled]
}

resource "google_compute_subnetwork" "ledger" {
  name                     = "${var.name}-subnet"
  network                  = google_compute_network.ledger.id
  region                   = var.region
  ip_cidr_range            = "10.20.0.0/24"
  private_ip_google_access = true
  # flow logs: which connections left or reached the network, for an investigation
  log_config {
    aggregation_interval = "INTERVAL_5_SEC"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Nothing in this network takes connections from outside it: said explicitly (the same
# as the implied rule), and logged, rather than left to the defaults.
resource "google_compute_firewall" "deny_ingress" {
  name          = "${var.name}-deny-ingress"
  network       = google_compute_network.ledger.id
  direction     = "INGRESS"
  priority      = 65534
  source_ranges = ["0.0.0.0/0"]
  deny {
    protocol = "all"
  }
  log_config {
    metadata = "INCLUDE_ALL_METADATA"
  }
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
  # On destroy, Terraform forgets the peering instead of deleting it: Cloud SQL and
  # Memorystore release their producer networks only a while after they are deleted,
  # so a delete right behind them fails "Producer services still using this
  # connection" and stops the teardown. The peering goes with the VPC.
  deletion_policy = "ABANDON"
}

resource "google_vpc_access_connector" "functions" {
  name          = "ledger-fn-connector"
  region        = var.region
  network       = google_compute_network.ledger.name
  ip_cidr_range = "10.8.0.0/28"
  min_instances = 2
  max_instances = 10
}

# Egress: the address is reserved, so it survives a NAT's re-creation and the ERP's
# allowlist stays right. It only ever translates outgoing connections: nothing listens on it.
resource "google_compute_address" "egress" {
  name         = "${var.name}-egress"
  region       = var.region
  address_type = "EXTERNAL"
  network_tier = "PREMIUM"
  depends_on   = [google_project_service.enabled]
}

resource "google_compute_router" "egress" {
  name    = "${var.name}-router"
  region  = var.region
  network = google_compute_network.ledger.id
}

resource "google_compute_router_nat" "egress" {
  name                   = "${var.name}-nat"
  region                 = var.region
  router                 = google_compute_router.egress.name
  nat_ip_allocate_option = "MANUAL_ONLY" # only the reserved address, never one Google picks
  nat_ips                = [google_compute_address.egress.self_link]
  # The connector's range is not a subnetwork of ours, so every range of the network
  # goes out through NAT (nothing else on it talks to the internet).
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY" # dropped connections (port exhaustion) show up in Logging
  }
}

output "erp_egress_ip" {
  description = "The one address the ERP (and the payment provider) sees the ledger's calls come from: put it on their allowlists."
  value       = google_compute_address.egress.address
}
