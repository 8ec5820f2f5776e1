# Monitoring: log-based metrics for the figures the ledger's own jobs log, alert policies
# on them and on Google's metrics (Cloud Run, Pub/Sub, Cloud SQL), and one dashboard.
# What each alert means and what to do: docs/monitoring.md.

locals {
  # The figures only the code knows, each from one structured log line (its `event`
  # field) of a scheduled function. tests/integration/test_monitoring_signals.py runs
  # each code path and checks the line carries the event and the field named here.
  log_distribution_metrics = {
    outbox_oldest_pending_age = {
      event       = "outbox_sweep"
      field       = "oldest_pending_s"
      unit        = "s"
      description = "Seconds since the oldest ledger event still unpublished was written, logged by every outbox sweep (0 when nothing is pending)."
    }
    erp_parked_batches = {
      event       = "erp_export_pass"
      field       = "parked_batches"
      unit        = "1"
      description = "ERP batches parked after repeated failed deliveries and not replayed yet, logged by every ERP export pass."
    }
    erp_reconcile_differences = {
      event       = "erp_reconciliation"
      field       = "difference_count"
      unit        = "1"
      description = "Periods, GL accounts and currencies where the ledger and the ERP's booked totals differ, logged by every reconciliation."
    }
    ledger_reconciled_age = {
      event       = "ledger_reconciled"
      field       = "reconciled_age_s"
      unit        = "s"
      description = "Seconds since a reconciliation last found the ledger clean (moved its checkpoint, or found nothing new), logged by every outbox sweep."
    }
    ledger_invariant_violations = {
      event       = "ledger_reconciliation"
      field       = "violation_count"
      unit        = "1"
      description = "The ledger's invariants (double entry, cached balances, lots, limits, posting rules) that the daily incremental reconciliation found broken, logged by every run (0 when all hold)."
    }
  }
  # Counted log lines: one per event dropped for being older than LEDGER_MAX_EVENT_AGE_S.
  log_counter_metrics = {
    events_dropped_too_old = {
      event       = "event_dropped_too_old"
      description = "Pub/Sub-delivered events not processed because they were older than LEDGER_MAX_EVENT_AGE_S, by function."
    }
  }
  log_metric_type = "logging.googleapis.com/user"

  # Cloud Run service names of the functions (their folders, with dashes), so that the
  # Cloud Run alerts cover every function and nothing else in the project.
  monitored_services      = sort([for name in local.function_names : replace(name, "_", "-")])
  monitored_http_services = sort([for name in local.http_functions : replace(name, "_", "-")])
  service_name_filter     = "resource.label.service_name = monitoring.regex.full_match(\"${join("|", local.monitored_services)}\")"
  http_service_filter     = "resource.label.service_name = monitoring.regex.full_match(\"${join("|", local.monitored_http_services)}\")"
  # Every dead-letter subscription is named like its topic, `<...>-dead-letter` (pubsub.tf):
  # matched by the suffix, so one added later is watched too.
  dead_letter_subscriptions = ".*-dead-letter" # an RE2 full match
  dead_letter_filter        = "resource.type = \"pubsub_subscription\" AND metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.label.subscription_id = monitoring.regex.full_match(\"${local.dead_letter_subscriptions}\")"
  cloudsql_filter           = "resource.type = \"cloudsql_database\" AND resource.label.database_id = \"${var.project_id}:${google_sql_database_instance.ledger.name}\""

  # Every policy notifies the channels given by id and the email channels made here.
  alert_notification_channels = concat(
    var.alert_notification_channel_ids,
    [for channel in values(google_monitoring_notification_channel.email) : channel.name],
  )
  runbook = "docs/monitoring.md in the ledger's repository"
}

resource "google_logging_metric" "distribution" {
  for_each        = local.log_distribution_metrics
  name            = "ledger/${each.key}"
  description     = each.value.description
  filter          = "resource.type = \"cloud_run_revision\" AND jsonPayload.event = \"${each.value.event}\""
  value_extractor = "EXTRACT(jsonPayload.${each.value.field})"
  label_extractors = {
    function = "EXTRACT(resource.labels.service_name)"
  }
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = each.value.unit
    labels {
      key         = "function"
      value_type  = "STRING"
      description = "The function (Cloud Run service) that logged it."
    }
  }
  # 0, then 1 to about 100,000 (an outbox age in seconds, a count of batches or differences)
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 40
      growth_factor      = 1.4
      scale              = 1
    }
  }
  depends_on = [google_project_service.enabled]
}

resource "google_logging_metric" "counter" {
  for_each    = local.log_counter_metrics
  name        = "ledger/${each.key}"
  description = each.value.description
  filter      = "resource.type = \"cloud_run_revision\" AND jsonPayload.event = \"${each.value.event}\""
  label_extractors = {
    function = "EXTRACT(resource.labels.service_name)"
  }
  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key         = "function"
      value_type  = "STRING"
      description = "The function (Cloud Run service) that dropped it."
    }
  }
  depends_on = [google_project_service.enabled]
}

resource "google_monitoring_notification_channel" "email" {
  for_each     = toset(var.alert_emails)
  display_name = "${var.name} ledger alerts: ${each.key}"
  type         = "email"
  labels = {
    email_address = each.key
  }
  depends_on = [google_project_service.enabled]
}

# The outbox backlog: events committed but not on Pub/Sub yet. Consumers (automation, the
# services reading ledger-events) see nothing of them until they are published.
resource "google_monitoring_alert_policy" "outbox_backlog" {
  display_name          = "${var.name}: ledger events unpublished for too long"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_notification_channels
  conditions {
    display_name = "Oldest unpublished event older than ${var.alert_outbox_backlog_age_s} s"
    condition_threshold {
      filter          = "metric.type = \"${local.log_metric_type}/${google_logging_metric.distribution["outbox_oldest_pending_age"].name}\" AND resource.type = \"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_outbox_backlog_age_s
      duration        = "${var.alert_outbox_backlog_duration_s}s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_MEAN"
        cross_series_reducer = "REDUCE_MAX"
      }
    }
  }
  documentation {
    subject   = "Ledger events unpublished for more than ${var.alert_outbox_backlog_age_s} s"
    mime_type = "text/markdown"
    content   = <<-EOT
      The oldest ledger event in the outbox has waited longer than ${var.alert_outbox_backlog_age_s} s to reach
      the `ledger-events` topic: Pub/Sub refuses it, or the sweeper cannot keep up. Nothing is
      lost (the outbox keeps every event), but consumers are behind.

      Runbook (${local.runbook}, "Outbox backlog"): `python -m common.ops status` shows the
      stuck events and their last error; the outbox_sweeper's ERROR lines say the same.
      Once the cause is fixed, `python -m common.ops sweep` publishes everything now.
    EOT
  }
}

# The scheduled jobs that report the figures above: silence means they stopped running
# (a broken Scheduler job or trigger, a function that fails before it logs).
resource "google_monitoring_alert_policy" "jobs_silent" {
  display_name          = "${var.name}: a scheduled ledger job stopped reporting"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_notification_channels
  conditions {
    display_name = "No outbox sweep for ${var.alert_outbox_sweeper_silent_s} s"
    condition_absent {
      filter   = "metric.type = \"${local.log_metric_type}/${google_logging_metric.distribution["outbox_oldest_pending_age"].name}\" AND resource.type = \"cloud_run_revision\""
      duration = "${var.alert_outbox_sweeper_silent_s}s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM" # one series, whatever the revision
      }
    }
  }
  conditions {
    display_name = "No ERP export pass for ${var.alert_erp_export_silent_s} s"
    condition_absent {
      filter   = "metric.type = \"${local.log_metric_type}/${google_logging_metric.distribution["erp_parked_batches"].name}\" AND resource.type = \"cloud_run_revision\""
      duration = "${var.alert_erp_export_silent_s}s"
      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
  documentation {
    subject   = "A scheduled ledger job stopped reporting"
    mime_type = "text/markdown"
    content   = <<-EOT
      The outbox sweeper (every minute) or the ERP export (every 5 minutes) has logged no
      pass for longer than expected: its Cloud Scheduler job, its tick topic or its trigger
      is broken, or the function fails before it gets to log (see its 5xx alert and logs).
      While it is silent, the backlog and parked-batch alerts cannot fire.

      Runbook (${local.runbook}, "A scheduled job is silent"): check the Scheduler job
      (`gcloud scheduler jobs describe ${var.name}-outbox-sweep-tick --location ${var.region}`)
      and the function's logs; meanwhile `python -m common.ops sweep` and
      `python -m common.ops export` do the same work by hand.
    EOT
  }
}

resource "google_monitoring_alert_policy" "erp_parked_batches" {
  display_name          = "${var.name}: ERP batches parked"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_notification_channels
  conditions {
    display_name = "Parked ERP batches above ${var.alert_erp_parked_batches}"
    condition_threshold {
      filter          = "metric.type = \"${local.log_metric_type}/${google_logging_metric.distribution["erp_parked_batches"].name}\" AND resource.type = \"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_erp_parked_batches
      duration        = "0s"
      aggregations {
        alignment_period     = "900s"
        per_series_aligner   = "ALIGN_MEAN"
        cross_series_reducer = "REDUCE_MAX"
      }
    }
  }
  documentation {
    subject   = "ERP batches parked after repeated failed deliveries"
    mime_type = "text/markdown"
    content   = <<-EOT
      At least one journal batch failed LEDGER_ERP_PARK_AFTER deliveries and is parked: the
      ERP does not have those transactions, and the export no longer retries them by itself.

      Runbook (${local.runbook}, "Parked ERP batches"): `python -m common.ops parked` lists
      them with their last error; fix the cause (the ERP down, a refused batch, the
      credential), then `python -m common.ops replay BATCH_ID` (or `--all`).
    EOT
  }
}

resource "google_monitoring_alert_policy" "erp_reconcile_differences" {
  display_name          = "${var.name}: ledger and ERP differ"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = local.alert_notification_channels
  conditions {
    display_name = "Reconciliation differences above ${var.alert_reconcile_differences}"
    condition_threshold {
      filter          = "metric.type = \"${local.log_metric_type}/${google_logging_metric.distribution["erp_reconcile_differences"].name}\" AND resource.type = \"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_reconcile_differences
      duration        = "0s"
      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_MEAN"
        cross_series_reducer = "REDUCE_MAX"
      }
    }
  }
  documentation {
    subject   = "The daily reconciliation found differences between the ledger and the ERP"
    mime_type = "text/markdown"
    content   = <<-EOT
      The ledger's debits and credits per period and GL account, over every delivered batch,
      differ from the ERP's booked totals: the ERP lost or changed a batch it acknowledged,
      or booked something the ledger did not send.

      Runbook (${local.runbook}, "Reconciliation differences"): `python -m common.ops reconcile`
      names each period, account and currency that differs (the erp_reconcile function's
      ERROR line carries the same report). Compare with the ERP's batches; a batch it lost
      can be sent again with `python -m common.ops replay BATCH_ID`.
    EOT
  }
}

# The daily check of the ledger's own invariants (functions/ledger_reconcile): any
# violation is money the ledger can no longer vouch for.
resource "google_monitoring_alert_policy" "ledger_invariant_violations" {
  display_name          = "${var.name}: the ledger's invariants are broken"
  combiner              = "OR"
  severity              = "CRITICAL"
  notification_channels = local.alert_notification_channels
  conditions {
    display_name = "Invariants broken above ${var.alert_ledger_invariant_violations}"
    condition_threshold {
      filter          = "metric.type = \"${local.log_metric_type}/${google_logging_metric.distribution["ledger_invariant_violations"].name}\" AND resource.type = \"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_ledger_invariant_violations
      duration        = "0s"
      aggregations {
        alignment_period     = "600s"
        per_series_aligner   = "ALIGN_MEAN"
        cross_series_reducer = "REDUCE_MAX"
      }
    }
  }
  documentation {
    subject   = "The daily reconciliation found the ledger's invariants broken"
    mime_type = "text/markdown"
    content   = <<-EOT
      The daily incremental reconciliation (the ledger_reconcile function) found at least
      one of the ledger's invariants broken after its checkpoint: entries that do not sum
      to zero, a cached balance that is not its entries' sum, a lot, a limit or a posting
      rule broken. The checkpoint did not move, so every following run reports it again
      until it is resolved. Postgres's guards refuse such rows, so a violation means a row
      written around them (by the schema's owner) or a bug in a guard.

      Runbook (${local.runbook}, "Broken ledger invariants"): the function's ERROR line
      names each invariant and the ids of up to 10 rows; `python -m common.reconcile`
      (as an operator) shows the rows themselves, and `python -m common.reconcile --full`
      checks the whole history. Freeze the wallets involved before anything else.
    EOT
  }
}

# The daily run cannot alert on its own absence, and a metric-absence condition waits
# at most 23.5 hours, less than a day between runs: the outbox sweeper logs, every
# minute, how long ago a reconciliation last found the ledger clean. Past the threshold,
# the run stopped coming, keeps failing to finish, or keeps finding violations.
resource "google_monitoring_alert_policy" "ledger_reconciliation_overdue" {
  display_name          = "${var.name}: the ledger has not reconciled clean for too long"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_notification_channels
  conditions {
    display_name = "Last clean reconciliation older than ${var.alert_reconciliation_overdue_s} s"
    condition_threshold {
      filter          = "metric.type = \"${local.log_metric_type}/${google_logging_metric.distribution["ledger_reconciled_age"].name}\" AND resource.type = \"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_reconciliation_overdue_s
      duration        = "600s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_MEAN"
        cross_series_reducer = "REDUCE_MIN"
      }
    }
  }
  documentation {
    subject   = "No clean reconciliation of the ledger for more than ${var.alert_reconciliation_overdue_s} s"
    mime_type = "text/markdown"
    content   = <<-EOT
      No reconciliation has found the ledger clean for longer than
      ${var.alert_reconciliation_overdue_s} s: the daily ledger_reconcile run stopped coming (its
      Scheduler job, tick topic or trigger), keeps failing to finish
      (`ledger_reconciliation_unfinished` lines), or keeps finding invariants broken (the
      CRITICAL alert fires too).

      Runbook (${local.runbook}, "Reconciliation overdue"): the function's logs say which;
      `python -m common.reconcile` (as an operator) runs the same check by hand and moves
      the checkpoint when it finds nothing.
    EOT
  }
}

resource "google_monitoring_alert_policy" "server_errors" {
  display_name          = "${var.name}: function 5xx rate"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_notification_channels
  conditions {
    display_name = "5xx responses above ${var.alert_5xx_ratio * 100}% of requests, per function"
    condition_threshold {
      filter             = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_count\" AND metric.label.response_code_class = \"5xx\" AND ${local.service_name_filter}"
      denominator_filter = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_count\" AND ${local.service_name_filter}"
      comparison         = "COMPARISON_GT"
      threshold_value    = var.alert_5xx_ratio
      duration           = "${var.alert_5xx_duration_s}s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
      denominator_aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
    }
  }
  documentation {
    subject   = "A ledger function answers 5xx to more than ${var.alert_5xx_ratio * 100}% of requests"
    mime_type = "text/markdown"
    content   = <<-EOT
      The function in the incident's `service_name` answers 503 (a dependency down: Cloud
      SQL, Redis, Firestore, Pub/Sub) or fails outright. The ledger never answers 500 by
      design, so a 500 is a bug. For a Pub/Sub-pushed or scheduled function, a 5xx is a
      delivery Pub/Sub retries, and after the last one a dead letter.

      Runbook (${local.runbook}, "5xx rate"): read the function's ERROR lines in Cloud
      Logging (each carries the trace of its request), then the Cloud SQL, Redis and
      dead-letter alerts; `python -m common.ops status` checks the database side.
    EOT
  }
}

resource "google_monitoring_alert_policy" "latency" {
  display_name          = "${var.name}: function p95 latency"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.alert_notification_channels
  conditions {
    display_name = "p95 latency above ${var.alert_latency_p95_ms} ms, per HTTP function"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_latencies\" AND ${local.http_service_filter}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_latency_p95_ms
      duration        = "${var.alert_latency_duration_s}s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_PERCENTILE_95"
        group_by_fields      = ["resource.label.service_name"]
      }
    }
  }
  documentation {
    subject   = "A ledger HTTP function's p95 latency is above ${var.alert_latency_p95_ms} ms"
    mime_type = "text/markdown"
    content   = <<-EOT
      Requests to the function in the incident's `service_name` are slow: the database is
      busy (see Cloud SQL CPU and connections), a hot wallet's lock is contended, or cold
      starts after scaling out.

      Runbook (${local.runbook}, "p95 latency"): the dashboard shows latency and Cloud SQL
      beside each other; Query Insights on the instance names slow statements;
      `python -m common.ops status` shows whether an ERP export is catching up (a
      background job slows live traffic).
    EOT
  }
}

resource "google_monitoring_alert_policy" "dead_letters" {
  display_name          = "${var.name}: messages in the dead letters"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_notification_channels
  conditions {
    display_name = "Undelivered dead letters above ${var.alert_dead_letters}, per subscription"
    condition_threshold {
      filter          = local.dead_letter_filter
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_dead_letters
      duration        = "60s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MAX"
        cross_series_reducer = "REDUCE_MAX"
        group_by_fields      = ["resource.label.subscription_id"]
      }
    }
  }
  documentation {
    subject   = "Messages are waiting in a ledger dead-letter subscription"
    mime_type = "text/markdown"
    content   = <<-EOT
      A balance action or an event pushed to a function failed every delivery (or was
      malformed, or too old to process) and moved to the dead-letter subscription in the
      incident's `subscription_id`. It is kept 31 days and never applied until replayed.

      Runbook (${local.runbook}, "Dead letters"): `python -m common.dead_letters list`
      shows each with why it failed; fix the cause, then
      `python -m common.dead_letters replay ID` (or `--all`).
    EOT
  }
}

resource "google_monitoring_alert_policy" "events_dropped_too_old" {
  display_name          = "${var.name}: events dropped for being too old"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.alert_notification_channels
  conditions {
    display_name = "Events older than LEDGER_MAX_EVENT_AGE_S dropped, per function"
    condition_threshold {
      filter          = "metric.type = \"${local.log_metric_type}/${google_logging_metric.counter["events_dropped_too_old"].name}\" AND resource.type = \"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_events_dropped_too_old
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.function"]
      }
    }
  }
  documentation {
    subject   = "A ledger function dropped events older than LEDGER_MAX_EVENT_AGE_S"
    mime_type = "text/markdown"
    content   = <<-EOT
      Pub/Sub delivered events to the function in the incident's `function` label after
      they had waited longer than LEDGER_MAX_EVENT_AGE_S: it kept failing on them, or was
      down for that long. A dropped tick only skips one run (the next tick does the work);
      a balance action or a ledger event is moved to the dead letters instead of being lost.

      Runbook (${local.runbook}, "Events dropped for being too old"): find why the function
      failed before (its 5xx alert and ERROR lines), then check the dead letters
      (`python -m common.dead_letters list`).
    EOT
  }
}

resource "google_monitoring_alert_policy" "cloudsql_cpu" {
  display_name          = "${var.name}: Cloud SQL CPU"
  combiner              = "OR"
  severity              = "WARNING"
  notification_channels = local.alert_notification_channels
  conditions {
    display_name = "Cloud SQL CPU above ${var.alert_db_cpu_utilization * 100}%"
    condition_threshold {
      filter          = "metric.type = \"cloudsql.googleapis.com/database/cpu/utilization\" AND ${local.cloudsql_filter}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.alert_db_cpu_utilization
      duration        = "${var.alert_db_duration_s}s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MEAN"
      }
    }
  }
  documentation {
    subject   = "The ledger's Cloud SQL instance is short of CPU"
    mime_type = "text/markdown"
    content   = <<-EOT
      The instance's CPU has stayed above ${var.alert_db_cpu_utilization * 100}%: every posting slows down, and
      timeouts become 503s. A background job (an ERP export catching up, a dormancy run, a
      reconciliation) competes with live traffic.

      Runbook (${local.runbook}, "Cloud SQL CPU"): Query Insights names the statements;
      `python -m common.ops status` shows whether the export is catching up. Raise
      `db_tier` if live traffic alone is the cause.
    EOT
  }
}

resource "google_monitoring_alert_policy" "cloudsql_connections" {
  display_name          = "${var.name}: Cloud SQL connections"
  combiner              = "OR"
  severity              = "ERROR"
  notification_channels = local.alert_notification_channels
  conditions {
    display_name = "Connections above ${var.alert_db_connections_ratio * 100}% of max_connections"
    condition_threshold {
      filter          = "metric.type = \"cloudsql.googleapis.com/database/postgresql/num_backends\" AND ${local.cloudsql_filter}"
      comparison      = "COMPARISON_GT"
      threshold_value = floor(var.alert_db_connections_ratio * local.max_connections)
      duration        = "${var.alert_db_duration_s}s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_MEAN"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.database_id"]
      }
    }
  }
  documentation {
    subject   = "The ledger's Cloud SQL instance is near max_connections"
    mime_type = "text/markdown"
    content   = <<-EOT
      Backends on the instance are above ${var.alert_db_connections_ratio * 100}% of max_connections
      (${local.max_connections}, computed from every function's max instances times its pool
      size). At the limit, new connections are refused and requests answer 503.

      Runbook (${local.runbook}, "Cloud SQL connections"): the dashboard shows which functions
      scaled out; `gcloud functions describe FUNCTION --region ${var.region}` shows a
      function's max instances, and `pg_stat_activity` (as an operator) who holds
      connections. Lower a function's max instances or pool size, or raise the tier, in
      the tfvars.
    EOT
  }
}

# One dashboard with the same figures, per function (or subscription) where they have one.
locals {
  dashboard_charts = [
    { title = "Outbox: oldest unpublished event (s)", filter = "metric.type = \"${local.log_metric_type}/${google_logging_metric.distribution["outbox_oldest_pending_age"].name}\" AND resource.type = \"cloud_run_revision\"", aligner = "ALIGN_MEAN", reducer = "REDUCE_MAX", group_by = [], threshold = var.alert_outbox_backlog_age_s },
    { title = "ERP: parked batches", filter = "metric.type = \"${local.log_metric_type}/${google_logging_metric.distribution["erp_parked_batches"].name}\" AND resource.type = \"cloud_run_revision\"", aligner = "ALIGN_MEAN", reducer = "REDUCE_MAX", group_by = [], threshold = var.alert_erp_parked_batches },
    { title = "ERP reconciliation: differences", filter = "metric.type = \"${local.log_metric_type}/${google_logging_metric.distribution["erp_reconcile_differences"].name}\" AND resource.type = \"cloud_run_revision\"", aligner = "ALIGN_MEAN", reducer = "REDUCE_MAX", group_by = [], threshold = var.alert_reconcile_differences },
    { title = "Ledger invariants broken (daily reconciliation)", filter = "metric.type = \"${local.log_metric_type}/${google_logging_metric.distribution["ledger_invariant_violations"].name}\" AND resource.type = \"cloud_run_revision\"", aligner = "ALIGN_MEAN", reducer = "REDUCE_MAX", group_by = [], threshold = var.alert_ledger_invariant_violations },
    { title = "Since the ledger last reconciled clean (s)", filter = "metric.type = \"${local.log_metric_type}/${google_logging_metric.distribution["ledger_reconciled_age"].name}\" AND resource.type = \"cloud_run_revision\"", aligner = "ALIGN_MEAN", reducer = "REDUCE_MIN", group_by = [], threshold = var.alert_reconciliation_overdue_s },
    { title = "5xx responses per second, per function", filter = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_count\" AND metric.label.response_code_class = \"5xx\" AND ${local.service_name_filter}", aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group_by = ["resource.label.service_name"], threshold = null },
    { title = "Requests per second, per function", filter = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_count\" AND ${local.service_name_filter}", aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group_by = ["resource.label.service_name"], threshold = null },
    { title = "p95 latency (ms), per function", filter = "resource.type = \"cloud_run_revision\" AND metric.type = \"run.googleapis.com/request_latencies\" AND ${local.service_name_filter}", aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_95", group_by = ["resource.label.service_name"], threshold = var.alert_latency_p95_ms },
    { title = "Dead letters waiting, per subscription", filter = local.dead_letter_filter, aligner = "ALIGN_MAX", reducer = "REDUCE_MAX", group_by = ["resource.label.subscription_id"], threshold = var.alert_dead_letters },
    { title = "Events dropped for being too old, per function", filter = "metric.type = \"${local.log_metric_type}/${google_logging_metric.counter["events_dropped_too_old"].name}\" AND resource.type = \"cloud_run_revision\"", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group_by = ["metric.label.function"], threshold = var.alert_events_dropped_too_old },
    { title = "Cloud SQL CPU utilization", filter = "metric.type = \"cloudsql.googleapis.com/database/cpu/utilization\" AND ${local.cloudsql_filter}", aligner = "ALIGN_MEAN", reducer = "REDUCE_MAX", group_by = [], threshold = var.alert_db_cpu_utilization },
    { title = "Cloud SQL connections (max_connections ${local.max_connections})", filter = "metric.type = \"cloudsql.googleapis.com/database/postgresql/num_backends\" AND ${local.cloudsql_filter}", aligner = "ALIGN_MEAN", reducer = "REDUCE_SUM", group_by = [], threshold = local.max_connections },
  ]
}

resource "google_monitoring_dashboard" "ledger" {
  dashboard_json = jsonencode({
    displayName = "${var.name}: wallet ledger"
    mosaicLayout = {
      columns = 48
      tiles = [
        for index, chart in local.dashboard_charts : {
          xPos   = (index % 2) * 24
          yPos   = floor(index / 2) * 16
          width  = 24
          height = 16
          widget = {
            title = chart.title
            xyChart = {
              dataSets = [{
                plotType = "LINE"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = chart.filter
                    aggregation = {
                      alignmentPeriod    = "60s"
                      perSeriesAligner   = chart.aligner
                      crossSeriesReducer = chart.reducer
                      groupByFields      = chart.group_by
                    }
                  }
                }
              }]
              thresholds = chart.threshold == null ? [] : [{ value = chart.threshold }]
            }
          }
        }
      ]
    }
  })
}
