# The migrations job: `python -m db upgrade` (db/__main__.py) as a Cloud Run job inside
# the VPC, reaching Cloud SQL's private IP through the functions' connector and logging
# in with IAM auth as its own database user, the schema's owner, which nothing else uses.
# After migrating it grants each function login's IAM user its database role and sets up
# pgaudit (db/logins.py). Its image is built by Cloud Build from infra/migrations/ and
# pushed to the repository below, tagged with its content's hash (infra/deploy.py), so
# an unchanged tree builds nothing and a job execution always runs a known image.

resource "google_artifact_registry_repository" "ledger" {
  repository_id = var.name
  location      = var.region
  format        = "DOCKER"
  description   = "The wallet ledger's migrations image, one tag per content hash."
  docker_config {
    # a tag is a content hash: the same tag must never name other content
    immutable_tags = true
  }
  depends_on = [google_project_service.enabled]
  # Images older than 30 days are deleted, except the 20 most recent (KEEP wins over
  # DELETE), among them the one the job runs: a rollback to an older release rebuilds
  # its image from the tree (infra/deploy.py pushes a hash that isn't there).
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 20
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "2592000s" # 30 days
    }
  }
}

# The job's identity, and so its IAM database user (the schema's owner).
resource "google_service_account" "migrator" {
  account_id   = "ledger-migrator"
  display_name = "Wallet ledger migrations job (the schema's owner)"
  depends_on   = [google_project_service.enabled]
}

resource "google_project_iam_member" "migrator" {
  for_each = toset(["roles/cloudsql.client", "roles/cloudsql.instanceUser"])
  project  = var.project_id
  role     = each.key
  member   = "serviceAccount:${google_service_account.migrator.email}"
}

# Starts with no privileges, like every IAM user; the deploy command makes it a member of
# cloudsqlsuperuser once (`gcloud sql users assign-roles`: provider 6.50's google_sql_user
# has no database roles), so that it can create the schemas, roles and extension it owns.
resource "google_sql_user" "migrator" {
  name     = trimsuffix(google_service_account.migrator.email, ".gserviceaccount.com")
  instance = google_sql_database_instance.ledger.name
  type     = "CLOUD_IAM_SERVICE_ACCOUNT"
}

# Cloud Build runs the image's build as this account, which may push to the repository,
# read the uploaded source from the sources bucket and write its logs, and nothing else.
resource "google_service_account" "migrations_builder" {
  account_id   = "ledger-migrations-builder"
  display_name = "Wallet ledger migrations image builds"
  depends_on   = [google_project_service.enabled]
}

resource "google_artifact_registry_repository_iam_member" "migrations_builder" {
  location   = google_artifact_registry_repository.ledger.location
  repository = google_artifact_registry_repository.ledger.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.migrations_builder.email}"
}

resource "google_storage_bucket_iam_member" "migrations_builder" {
  bucket = google_storage_bucket.sources.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.migrations_builder.email}"
}

resource "google_project_iam_member" "migrations_builder_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.migrations_builder.email}"
}

locals {
  migrations_image_base = "${google_artifact_registry_repository.ledger.location}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.ledger.repository_id}/migrations"
  # Each function login's IAM user -> the database role it is granted after migrating;
  # the operators' IAM group (database.tf), when there is one -> ledger_operator.
  database_login_roles = merge(
    { for login, user in google_sql_user.database_login : user.name => local.database_logins[login].db_role },
    { for user in google_sql_user.operators : user.name => "ledger_operator" },
  )
}

resource "google_cloud_run_v2_job" "migrations" {
  name     = "${var.name}-migrations"
  location = var.region
  # the job holds no data: a teardown removes it with the rest
  deletion_protection = false
  depends_on          = [google_project_service.enabled]

  template {
    task_count = 1
    template {
      service_account = google_service_account.migrator.email
      # one try: a failed upgrade changed nothing (one transaction); the deploy stops on it
      max_retries = 0
      timeout     = "1800s"
      vpc_access {
        connector = google_vpc_access_connector.functions.id
        egress    = "PRIVATE_RANGES_ONLY"
      }
      containers {
        image = "${local.migrations_image_base}:${var.migrations_image_tag}"
        args  = ["upgrade"]
        env {
          name  = "LEDGER_DB_INSTANCE"
          value = google_sql_database_instance.ledger.connection_name
        }
        env {
          name  = "LEDGER_DB_NAME"
          value = google_sql_database.ledger.name
        }
        env {
          name  = "LEDGER_DB_IAM_AUTH"
          value = "true"
        }
        env {
          name  = "LEDGER_DB_USER"
          value = google_sql_user.migrator.name
        }
        env {
          name  = "LEDGER_DB_LOGIN_ROLES"
          value = jsonencode(local.database_login_roles)
        }
        env {
          name  = "LEDGER_DB_CLOUD_SQL"
          value = "true"
        }
        # the instance's pgaudit.role flag names the same role (database.tf)
        env {
          name  = "LEDGER_DB_AUDIT_ROLE"
          value = var.db_pgaudit_role
        }
        resources {
          limits = {
            cpu    = "1"
            memory = "512Mi"
          }
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = can(regex("^[0-9a-f]{16,64}$", var.migrations_image_tag))
      error_message = "var.migrations_image_tag is the migrations image's content hash, which `make deploy` computes and passes: deploy with it."
    }
  }
}
