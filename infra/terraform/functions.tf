# Every function deploys as its folder plus common/ (built by infra/bundle.py).

locals {
  http_functions = toset(["topup", "bonus", "usage", "transfer", "void", "wallets"])
  all_functions  = setunion(local.http_functions, toset(["erp_export"]))

  function_env = {
    LEDGER_DB_INSTANCE        = google_sql_database_instance.ledger.connection_name
    LEDGER_DB_USER            = google_sql_user.functions.name
    LEDGER_DB_NAME            = google_sql_database.ledger.name
    LEDGER_DB_IAM_AUTH        = "true"
    LEDGER_REDIS_URL          = "redis://${google_redis_instance.locks.host}:${google_redis_instance.locks.port}/0"
    LEDGER_GCP_PROJECT        = var.project_id
    LEDGER_FIRESTORE_DATABASE = google_firestore_database.ledger.name
    LEDGER_IDEMPOTENCY_TTL_S  = tostring(var.idempotency_ttl_s)
    LEDGER_EVENTS_TOPIC       = google_pubsub_topic.ledger_events.name
  }
}

resource "google_storage_bucket" "sources" {
  name                        = "${var.project_id}-${var.name}-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  versioning {
    enabled = true
  }
}

resource "google_storage_bucket_object" "bundle" {
  for_each = local.all_functions
  # The content hash in the name makes a changed bundle a new object, and so a redeploy.
  name   = "${each.key}-${filemd5("${path.module}/${var.bundle_dir}/${each.key}.zip")}.zip"
  bucket = google_storage_bucket.sources.name
  source = "${path.module}/${var.bundle_dir}/${each.key}.zip"
}

resource "google_cloudfunctions2_function" "http" {
  for_each = local.http_functions
  name     = replace(each.key, "_", "-")
  location = var.region

  build_config {
    runtime     = "python311"
    entry_point = each.key
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.bundle[each.key].name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.functions.email
    available_memory                 = "512Mi"
    available_cpu                    = "1"
    max_instance_request_concurrency = var.function_concurrency
    max_instance_count               = var.function_max_instances
    min_instance_count               = 1
    timeout_seconds                  = 30
    ingress_settings                 = "ALLOW_INTERNAL_AND_GCLB"
    vpc_connector                    = google_vpc_access_connector.functions.id
    vpc_connector_egress_settings    = "PRIVATE_RANGES_ONLY"
    environment_variables            = local.function_env
  }
}

# erp_export consumes ledger-events. An Eventarc trigger's subscription cannot carry a
# dead-letter policy from Terraform; the ERP issue replaces it with a direct push
# subscription (OIDC, dead_letter_policy, retry_policy) to the function's URL.
resource "google_cloudfunctions2_function" "erp_export" {
  name     = "erp-export"
  location = var.region

  build_config {
    runtime     = "python311"
    entry_point = "erp_export"
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.bundle["erp_export"].name
      }
    }
  }

  service_config {
    service_account_email         = google_service_account.functions.email
    available_memory              = "512Mi"
    max_instance_count            = 10
    timeout_seconds               = 120
    ingress_settings              = "ALLOW_INTERNAL_ONLY"
    vpc_connector                 = google_vpc_access_connector.functions.id
    vpc_connector_egress_settings = "PRIVATE_RANGES_ONLY"
    environment_variables         = local.function_env
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = google_pubsub_topic.ledger_events.id
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.functions.email
  }
}
