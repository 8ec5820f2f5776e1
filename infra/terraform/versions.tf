terraform {
  required_version = ">= 1.6"
  required_providers {
    # One minor version, pinned with the committed .terraform.lock.hcl: a provider upgrade
    # is a reviewed change, not something `terraform init` does on its own.
    google = {
      source  = "hashicorp/google"
      version = "~> 6.50.0"
    }
    # API Gateway (gateway.tf) is in the beta provider only
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.50.0"
    }
  }

  # State lives in a GCS bucket per environment (versioned, one writer at a time through
  # the bucket's lock): its bucket and prefix come from envs/<env>.gcs.tfbackend, given to
  # `terraform init -backend-config=...` (docs/infrastructure.md, "State").
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}
