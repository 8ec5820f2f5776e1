# API Gateway in front of the functions end users call (auth.tf's end_user_functions):
# it checks each request's Identity Platform ID token against the OpenAPI document that
# auth.tf builds from the routes the code serves, and calls the function with a
# Google-signed token of its own service account, the one end-user path Cloud Run lets
# through (invokers.tf). The user's token reaches the function in
# X-Forwarded-Authorization, which common/auth verifies in full again. Why, and what the
# extra hop costs: docs/authentication-deployment.md.

resource "google_service_account" "gateway" {
  account_id   = "ledger-gateway"
  display_name = "API Gateway calling the wallet ledger for end users"
  depends_on   = [google_project_service.enabled]
}

resource "google_api_gateway_api" "ledger" {
  provider   = google-beta
  api_id     = var.name
  depends_on = [google_project_service.enabled]
}

# A config can't change once made: a changed document makes a new one, which the gateway
# switches to before the old one goes.
resource "google_api_gateway_api_config" "ledger" {
  provider             = google-beta
  api                  = google_api_gateway_api.ledger.api_id
  api_config_id_prefix = "${var.name}-"

  openapi_documents {
    document {
      path     = "end-users.json"
      contents = base64encode(local.gateway_openapi)
    }
  }

  gateway_config {
    backend_config {
      google_service_account = google_service_account.gateway.email
    }
  }

  lifecycle {
    create_before_destroy = true
  }
}

# The API's own managed service must be on before the gateway serves it.
resource "google_project_service" "gateway_api" {
  project            = var.project_id
  service            = google_api_gateway_api.ledger.managed_service
  disable_on_destroy = false
}

resource "google_api_gateway_gateway" "ledger" {
  provider   = google-beta
  gateway_id = var.name
  api_config = google_api_gateway_api_config.ledger.id
  region     = var.gateway_region
  depends_on = [google_project_service.gateway_api]
}

output "gateway_url" {
  description = "Where end users' apps call the ledger, with their Identity Platform ID token in Authorization: the paths of docs/openapi.json of the functions end users call."
  value       = "https://${google_api_gateway_gateway.ledger.default_hostname}"
}
