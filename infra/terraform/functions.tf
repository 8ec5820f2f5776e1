# Every function deploys as its folder plus common/ (built by infra/bundle.py). Which
# functions there are, and how each is triggered, comes from the folders (function_list.tf).

locals {
  function_env = {
    LEDGER_DB_INSTANCE        = google_sql_database_instance.ledger.connection_name
    LEDGER_DB_NAME            = google_sql_database.ledger.name
    LEDGER_DB_IAM_AUTH        = "true"
    LEDGER_GCP_PROJECT        = var.project_id
    LEDGER_FIRESTORE_DATABASE = google_firestore_database.ledger.name
    LEDGER_IDEMPOTENCY_TTL_S  = tostring(var.idempotency_ttl_s)
    LEDGER_EVENTS_TOPIC       = google_pubsub_topic.ledger_events.name
    LEDGER_ERP_URL            = var.erp_url
  }
  # Each function's own: its pool size (capacity.tf), Redis's address and CA where it
  # uses Redis (redis.tf; its AUTH string is a secret, mounted below), and for a
  # background job (a scheduled function) how it paces its batches.
  function_own_env = {
    for name in local.function_names : name => merge(
      { LEDGER_DB_POOL_SIZE = tostring(local.function_pool_size[name]) },
      contains(local.redis_functions, name) ? local.redis_env : {},
      contains(local.scheduled_functions, name) ? local.job_pacing_env : {},
    )
  }
  # common/pacing.py's settings (docs/background-jobs.md)
  job_pacing_env = {
    LEDGER_JOB_PACING        = var.job_pacing
    LEDGER_JOB_DUTY_CAP      = tostring(var.job_duty_cap)
    LEDGER_JOB_DUTY_FLOOR    = tostring(var.job_duty_floor)
    LEDGER_JOB_BUSY_SESSIONS = tostring(var.job_busy_sessions)
  }
  # the Pub/Sub-pushed functions' topics, one variable per Settings field that names them
  # (function_list.tf's setting_topics)
  message_env = merge(
    { for setting, topics in local.setting_topics : "LEDGER_${upper(setting)}" => join(",", topics) },
    { LEDGER_ACTION_MAX_DELIVERIES = tostring(var.action_max_deliveries) },
  )
  # The longest a pushed function works on one message, and so how long its push
  # subscriptions wait for the answer (ack_deadline_seconds, at most 600): a scheduled
  # pass (ticked alone) may run 9 minutes, a message or an event 5.
  push_timeout_s = { for name, pushed in local.push_functions : name => pushed.ticked_only ? 540 : 300 }
}

resource "google_storage_bucket" "sources" {
  name                        = "${var.project_id}-${var.name}-sources"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # It holds only what Terraform and Cloud Build put there (the functions' bundles, the
  # migrations image's uploaded source), every one rebuilt from the repository: a
  # teardown deletes them with the bucket instead of stopping on "bucket not empty".
  force_destroy = true
  depends_on    = [google_project_service.enabled]
  versioning {
    enabled = true
  }
  lifecycle {
    # function_list.tf reads ../../functions: run from a copy without it, the list would
    # be empty and the plan would destroy every function
    precondition {
      condition     = length(local.function_names) > 0
      error_message = "No functions found under ${local.functions_dir}: run Terraform from the repository's infra/terraform."
    }
  }
}

resource "google_storage_bucket_object" "bundle" {
  for_each = local.function_names
  # The content hash in the name makes a changed bundle a new object, and so a redeploy.
  name   = "${each.key}-${filemd5("${path.module}/${var.bundle_dir}/${each.key}.zip")}.zip"
  bucket = google_storage_bucket.sources.name
  source = "${path.module}/${var.bundle_dir}/${each.key}.zip"
}

resource "google_cloudfunctions2_function" "http" {
  # the APIs, a version of every secret a function mounts (secret_versions.tf), the build
  # account's roles before the first build, and what its identity needs before a revision
  # starts: to read the secrets it mounts (or the revision fails "Permission denied on
  # secret") and its login's project roles (Cloud SQL client and instance user, ...)
  depends_on = [
    google_project_service.enabled,
    data.google_secret_manager_secret_version.mounted,
    google_project_iam_member.build,
    google_project_iam_member.build_storage,
    google_secret_manager_secret_iam_member.cursor_key,
    google_secret_manager_secret_iam_member.erp_credential,
    google_secret_manager_secret_iam_member.payment_provider_token,
    google_secret_manager_secret_iam_member.redis_auth,
    google_project_iam_member.database_login,
  ]
  for_each = local.http_functions
  name     = replace(each.key, "_", "-")
  location = var.region

  build_config {
    runtime     = "python311"
    entry_point = each.key
    # built as the ledger's own build account (iam.tf), not the default compute account
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.bundle[each.key].name
      }
    }
  }

  service_config {
    # its database login's identity, and so its database role
    service_account_email            = google_service_account.database_login[local.function_declarations[each.key].database_login].email
    available_memory                 = "512Mi"
    available_cpu                    = "1"
    max_instance_request_concurrency = local.function_request_concurrency[each.key]
    max_instance_count               = local.function_max_instances_all[each.key]
    min_instance_count               = var.http_function_min_instances
    timeout_seconds                  = 30
    ingress_settings                 = local.function_ingress[each.key]
    vpc_connector                    = google_vpc_access_connector.functions.id
    vpc_connector_egress_settings    = local.function_vpc_egress[each.key]
    # the issuers, keys and audiences whose tokens this function accepts (auth.tf)
    environment_variables = merge(local.function_env, local.function_own_env[each.key], {
      LEDGER_AUTH_ISSUERS = local.auth_issuers[each.key]
      LEDGER_DB_USER      = google_sql_user.database_login[local.function_declarations[each.key].database_login].name
      # a warm minimum instance builds its clients when it starts, before its first
      # caller (common/bootstrap.py warm_up; docs/infrastructure.md)
      LEDGER_WARM_UP_ON_START = var.http_function_min_instances > 0 ? "true" : "false"
    })
    # Memorystore's AUTH string, at the version Terraform wrote (redis.tf)
    dynamic "secret_environment_variables" {
      for_each = contains(local.redis_functions, each.key) ? ["redis"] : []
      content {
        key        = "LEDGER_REDIS_AUTH"
        project_id = var.project_id
        secret     = google_secret_manager_secret.redis_auth.secret_id
        version    = google_secret_manager_secret_version.redis_auth.version
      }
    }
    # the key that signs history cursors: one for every instance, or a page served by
    # another instance would refuse the cursor (the function refuses to start without it)
    dynamic "secret_environment_variables" {
      for_each = contains(local.cursor_functions, each.key) ? ["cursor"] : []
      content {
        key        = "LEDGER_CURSOR_KEY"
        project_id = var.project_id
        secret     = google_secret_manager_secret.cursor_key.secret_id
        version    = "latest"
      }
    }
  }

  lifecycle {
    # Services mint their tokens for the URL Google gives the function; auth.tf worked it
    # out before the function existed. Should they ever differ, every service call would
    # get 401: stop here instead.
    postcondition {
      condition     = contains(local.service_token_audiences[each.key], self.url)
      error_message = "${each.key}'s URL is ${self.url}, which its LEDGER_AUTH_ISSUERS does not accept as services' audience: add it to var.service_token_audiences[\"${each.key}\"]."
    }
  }
}

# The Pub/Sub-triggered functions (function_list.tf's push_functions): each topic's
# messages, Cloud Scheduler's ticks included, arrive through a push subscription of
# pubsub.tf, with its retry and dead-letter policies, not through an Eventarc trigger.
# erp_export reads the ledger itself, so it needs no ledger-events subscription, and a
# tick Pub/Sub delivers twice runs one pass that finds nothing new. Without a trigger
# Google builds the function as an HTTP one; the @functions_framework.cloud_event decorator still makes functions-framework
# serve it CloudEvents (its registry outranks the platform's signature type), converted
# from the push envelope.
resource "google_cloudfunctions2_function" "pushed" {
  # the APIs, a version of every secret a function mounts (secret_versions.tf), the build
  # account's roles before the first build, and what its identity needs before a revision
  # starts: to read the secrets it mounts (or the revision fails "Permission denied on
  # secret") and its login's project roles (Cloud SQL client and instance user, ...)
  depends_on = [
    google_project_service.enabled,
    data.google_secret_manager_secret_version.mounted,
    google_project_iam_member.build,
    google_project_iam_member.build_storage,
    google_secret_manager_secret_iam_member.cursor_key,
    google_secret_manager_secret_iam_member.erp_credential,
    google_secret_manager_secret_iam_member.payment_provider_token,
    google_secret_manager_secret_iam_member.redis_auth,
    google_project_iam_member.database_login,
  ]
  for_each = local.push_functions
  name     = replace(each.key, "_", "-")
  location = var.region

  build_config {
    runtime     = "python311"
    entry_point = each.key
    # built as the ledger's own build account (iam.tf), not the default compute account
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.bundle[each.key].name
      }
    }
  }

  service_config {
    # its database login's identity, and so its database role
    service_account_email            = google_service_account.database_login[local.function_declarations[each.key].database_login].email
    available_memory                 = "1Gi" # a bulk message carries up to 1,000 usage records
    available_cpu                    = "1"
    max_instance_request_concurrency = local.function_request_concurrency[each.key]
    # one pass at a time for a scheduled function: one instance (a racing pass stops at
    # the cursor anyway) serving one request (capacity.tf)
    max_instance_count = local.function_max_instances_all[each.key]
    timeout_seconds    = local.push_timeout_s[each.key]
    # Pub/Sub's pushes count as internal traffic; nothing else calls these functions
    ingress_settings              = "ALLOW_INTERNAL_ONLY"
    vpc_connector                 = google_vpc_access_connector.functions.id
    vpc_connector_egress_settings = local.function_vpc_egress[each.key]
    environment_variables = merge(
      local.function_env,
      local.function_own_env[each.key],
      each.value.ticked_only ? {} : local.message_env,
      {
        LEDGER_DB_USER = google_sql_user.database_login[local.function_declarations[each.key].database_login].name
        # an event older than this is dropped, not processed (variables.tf max_event_age_s)
        LEDGER_MAX_EVENT_AGE_S = tostring(var.max_event_age_s[each.key])
      },
      # its tick topic, when Cloud Scheduler ticks it (function_list.tf spells it from the field)
      { for topic in [lookup(local.tick_function_topics, each.key, null)] : "LEDGER_${upper(local.function_declarations[each.key].tick_topic_setting)}" => topic if topic != null },
      local.function_declarations[each.key].database_login == "automation" ? { LEDGER_PAYMENT_PROVIDER_URL = var.payment_provider_url } : {},
    )
    # Memorystore's AUTH string, at the version Terraform wrote (redis.tf)
    dynamic "secret_environment_variables" {
      for_each = contains(local.redis_functions, each.key) ? ["redis"] : []
      content {
        key        = "LEDGER_REDIS_AUTH"
        project_id = var.project_id
        secret     = google_secret_manager_secret.redis_auth.secret_id
        version    = google_secret_manager_secret_version.redis_auth.version
      }
    }
    # the ERP export and reconciliation send to the ERP with this credential
    dynamic "secret_environment_variables" {
      for_each = local.function_declarations[each.key].database_login == "exporter" ? ["erp"] : []
      content {
        key        = "LEDGER_ERP_TOKEN"
        project_id = var.project_id
        secret     = google_secret_manager_secret.erp_credential.secret_id
        version    = "latest"
      }
    }
    # auto top-ups charge the payment provider with this token
    dynamic "secret_environment_variables" {
      for_each = local.function_declarations[each.key].database_login == "automation" ? ["payment"] : []
      content {
        key        = "LEDGER_PAYMENT_PROVIDER_TOKEN"
        project_id = var.project_id
        secret     = google_secret_manager_secret.payment_provider_token.secret_id
        version    = "latest"
      }
    }
  }

  lifecycle {
    # common/config.py refuses these at start too; a plan stops before any job is deployed
    precondition {
      condition     = var.job_duty_floor <= var.job_duty_cap
      error_message = "job_duty_floor (${var.job_duty_floor}) is above job_duty_cap (${var.job_duty_cap}): the floor is the least a job's duty may fall to."
    }
  }
}
