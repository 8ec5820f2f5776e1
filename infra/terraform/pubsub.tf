resource "google_pubsub_topic" "ledger_events" {
  name                       = one(local.setting_topics.events_topic)
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.enabled]
}

resource "google_secret_manager_secret" "erp_credential" {
  secret_id = "erp-credential"
  replication {
    auto {}
  }
  # The value is added out of band (gcloud secrets versions add); never in code.
  depends_on = [google_project_service.enabled]
}

# The HMAC key of history cursors (docs/api.md, "Paging"), read by the wallets function.
# The value is added out of band, at least 32 random bytes:
#   openssl rand -base64 48 | gcloud secrets versions add cursor-key --data-file=-
resource "google_secret_manager_secret" "cursor_key" {
  secret_id = "cursor-key"
  replication {
    auto {}
  }
  depends_on = [google_project_service.enabled]
}

# The payment provider's token, with which auto top-ups charge (the automation function
# alone reads it). Added out of band, before the function deploys:
#   gcloud secrets versions add payment-provider-token --data-file=-
resource "google_secret_manager_secret" "payment_provider_token" {
  secret_id = "payment-provider-token"
  replication {
    auto {}
  }
  depends_on = [google_project_service.enabled]
}

# Cloud Scheduler ticks: one topic and one job per scheduled function, each on its tick
# topic's schedule (a function whose tick topic has none here stops the plan).
locals {
  tick_schedules = {
    "erp-export-tick"       = var.erp_export_schedule
    "outbox-sweep-tick"     = "* * * * *"
    "erp-reconcile-tick"    = var.erp_reconcile_schedule
    "lot-expiry-tick"       = var.lot_expiry_schedule
    "dormancy-tick"         = var.dormancy_schedule
    "ledger-reconcile-tick" = var.ledger_reconcile_schedule
    "automation-tick"       = var.automation_schedule
  }
  ticks = { for topic in values(local.tick_function_topics) : topic => local.tick_schedules[topic] }
}

resource "google_pubsub_topic" "ticks" {
  for_each   = local.ticks
  name       = each.key
  depends_on = [google_project_service.enabled]
}

resource "google_cloud_scheduler_job" "ticks" {
  for_each  = local.ticks
  name      = "${var.name}-${each.key}"
  region    = var.region
  schedule  = each.value
  time_zone = "Etc/UTC"
  pubsub_target {
    topic_name = google_pubsub_topic.ticks[each.key].id
    data       = base64encode("tick")
  }
}

# Balance actions as messages (docs/messages.md) and event-driven automation
# (docs/automation.md). Pub/Sub proves no publisher's identity to the subscriber, so topic
# IAM decides who may publish what: each publishing service may publish to its own topic
# only, and the actions function treats the topic as the principal the message comes from.

resource "google_pubsub_topic" "action_topics" {
  for_each                   = var.action_publishers
  name                       = each.value.topic
  message_retention_duration = "604800s" # a subscription can be sought back a week
  depends_on                 = [google_project_service.enabled]
}

# A publisher that is no caller of an HTTP function and brings no account of its own gets
# one here, as callers do (invokers.tf).
resource "google_service_account" "publishers" {
  for_each     = toset([for service, publisher in var.action_publishers : service if publisher.email == null && !contains(local.service_callers, service)])
  account_id   = "ledger-${replace(each.key, "_", "-")}"
  display_name = "Publishes balance actions to the wallet ledger as ${each.key}"
  depends_on   = [google_project_service.enabled]
}

locals {
  publisher_emails = {
    for service, publisher in var.action_publishers :
    service => coalesce(publisher.email, try(local.caller_emails[service], google_service_account.publishers[service].email))
  }
}

resource "google_pubsub_topic_iam_member" "action_publishers" {
  for_each = var.action_publishers
  topic    = google_pubsub_topic.action_topics[each.key].id
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${local.publisher_emails[each.key]}"
}

# Every outcome goes to one results topic; each publisher reads its own through a
# subscription filtered on the topic it published to (the result's source_topic
# attribute: the topic's full name, as the principal's subject), and may read no other.
resource "google_pubsub_topic" "action_results" {
  name                       = one(local.setting_topics.action_results_topic)
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.enabled]
}

resource "google_pubsub_subscription" "action_results" {
  for_each                   = var.action_publishers
  name                       = "${google_pubsub_topic.action_results.name}-${replace(each.key, "_", "-")}"
  topic                      = google_pubsub_topic.action_results.id
  filter                     = "attributes.source_topic = \"projects/${var.project_id}/topics/${each.value.topic}\""
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  # never deleted, however long the publisher leaves it unread (the default: 31 days)
  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription_iam_member" "action_results" {
  for_each     = var.action_publishers
  subscription = google_pubsub_subscription.action_results[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${local.publisher_emails[each.key]}"
}

# Low-balance notices (and declined auto top-ups); whoever sends them on subscribes here.
resource "google_pubsub_topic" "notifications" {
  name                       = one(local.setting_topics.notifications_topic)
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.enabled]
}

# Automation's replay topic: pushed to the automation function alone (its deploy.json), so
# a dead-lettered ledger event an operator replays (common/dead_letters.py) acts there and
# reaches no other subscriber of the events topic. Operators publish to it (below).
resource "google_pubsub_topic" "automation_replay" {
  name                       = one(local.setting_topics.automation_replay_topic)
  message_retention_duration = "604800s"
  depends_on                 = [google_project_service.enabled]
}

# Each Pub/Sub-triggered function's dead-letter topic (function_list.tf), with a pull subscription
# of the same name (the operator's `make dead-letters` reads it), so nothing
# dead-lettered is lost: both keep a message 31 days, Pub/Sub's longest.
resource "google_pubsub_topic" "dead_letters" {
  for_each                   = local.dead_letter_topics
  name                       = each.key
  message_retention_duration = "2678400s"
  depends_on                 = [google_project_service.enabled]
}

resource "google_pubsub_subscription" "dead_letters" {
  for_each                   = local.dead_letter_topics
  name                       = each.key
  topic                      = google_pubsub_topic.dead_letters[each.key].id
  ack_deadline_seconds       = 60
  message_retention_duration = "2678400s"
  expiration_policy {
    ttl = ""
  }
}

# One push subscription per (pushed function, topic) (function_list.tf's
# push_subscriptions), named as the local stack names it, straight to the function's URL: an Eventarc trigger's subscription can't be given a
# dead-letter policy. The path names the topic, which functions-framework makes the
# CloudEvent's source. Each push carries an OIDC token of the function's own pushing
# account (invokers.tf), the one identity that may invoke it.
locals {
  # every topic Terraform makes, by name
  topic_ids = merge(
    { for topic in [google_pubsub_topic.ledger_events, google_pubsub_topic.action_results, google_pubsub_topic.notifications, google_pubsub_topic.automation_replay] : topic.name => topic.id },
    { for topic in values(google_pubsub_topic.ticks) : topic.name => topic.id },
    { for topic in values(google_pubsub_topic.action_topics) : topic.name => topic.id },
    { for topic in values(google_pubsub_topic.dead_letters) : topic.name => topic.id },
  )
}

resource "google_pubsub_subscription" "pushed" {
  for_each = local.push_subscriptions
  name     = each.key
  topic    = local.topic_ids[each.value.topic]
  # Pub/Sub waits this long for the function's answer before it counts a failed delivery;
  # the function gives up no later.
  ack_deadline_seconds       = local.push_timeout_s[each.value.function]
  message_retention_duration = "604800s"
  expiration_policy {
    ttl = ""
  }

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.pushed[each.value.function].service_config[0].uri}/projects/${var.project_id}/topics/${each.value.topic}"
    oidc_token {
      service_account_email = google_service_account.pushers[each.value.function].email
      audience              = google_cloudfunctions2_function.pushed[each.value.function].service_config[0].uri
    }
  }

  # A transient failure (a dependency down, contention) is retried with backoff; after
  # var.action_max_deliveries deliveries the message moves to the dead letters. A tick
  # that keeps failing lands there too, where an alert sees it, instead of retrying for
  # a day as an Eventarc trigger's would.
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letters[each.value.dead_letter_topic].id
    max_delivery_attempts = var.action_max_deliveries
  }

  # without them, Pub/Sub can't move a message to the dead letters
  depends_on = [google_pubsub_topic_iam_member.dead_letters_by_pubsub]
}

# Dead-lettering is done by the project's Pub/Sub service agent: it publishes to the
# dead-letter topics and acknowledges on the subscriptions it moves messages from. Google
# creates the agent lazily, so on a brand-new project it may not exist yet and a grant to
# its spelled-out email would fail: this makes Google create it (or returns it) first.
resource "google_project_service_identity" "pubsub" {
  provider   = google-beta
  project    = var.project_id
  service    = "pubsub.googleapis.com"
  depends_on = [google_project_service.enabled]
}

locals {
  pubsub_service_agent = google_project_service_identity.pubsub.member
}

resource "google_pubsub_topic_iam_member" "dead_letters_by_pubsub" {
  for_each = local.dead_letter_topics
  topic    = google_pubsub_topic.dead_letters[each.key].id
  role     = "roles/pubsub.publisher"
  member   = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_sources_by_pubsub" {
  for_each     = local.push_subscriptions
  subscription = google_pubsub_subscription.pushed[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# The operators' dead-letter command: it pulls the dead-letter subscriptions, looks up the
# subscription a dead letter came through to name its topic, and replays a balance action
# by publishing it again to its topic, an automation dead letter to automation's replay
# topic (which is why this is a named few).
resource "google_pubsub_subscription_iam_member" "dead_letter_readers" {
  for_each     = { for pair in setproduct(local.dead_letter_topics, var.dead_letter_operators) : "${pair[0]} ${pair[1]}" => { subscription = pair[0], member = pair[1] } }
  subscription = google_pubsub_subscription.dead_letters[each.value.subscription].id
  role         = "roles/pubsub.subscriber"
  member       = each.value.member
}

resource "google_pubsub_subscription_iam_member" "dead_letter_sources_viewers" {
  for_each     = { for pair in setproduct(keys(local.push_subscriptions), var.dead_letter_operators) : "${pair[0]} ${pair[1]}" => { subscription = pair[0], member = pair[1] } }
  subscription = google_pubsub_subscription.pushed[each.value.subscription].id
  role         = "roles/pubsub.viewer"
  member       = each.value.member
}

resource "google_pubsub_topic_iam_member" "dead_letter_replayers" {
  for_each = { for pair in setproduct(keys(var.action_publishers), var.dead_letter_operators) : "${pair[0]} ${pair[1]}" => { publisher = pair[0], member = pair[1] } }
  topic    = google_pubsub_topic.action_topics[each.value.publisher].id
  role     = "roles/pubsub.publisher"
  member   = each.value.member
}

# Replaying automation's dead letters: to its own replay topic, never to the events topic.
resource "google_pubsub_topic_iam_member" "automation_replayers" {
  for_each = toset(var.dead_letter_operators)
  topic    = google_pubsub_topic.automation_replay.id
  role     = "roles/pubsub.publisher"
  member   = each.value
}
