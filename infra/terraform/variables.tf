variable "project_id" {
  description = "Google Cloud project that hosts the ledger."
  type        = string
}

variable "region" {
  description = "Region for every regional resource."
  type        = string
  default     = "asia-southeast2"
}

variable "name" {
  description = "Prefix for resource names."
  type        = string
  default     = "wallet-ledger"
}

variable "bundle_dir" {
  description = "Where `python -m infra.bundle NAME DIR` wrote each function's zip."
  type        = string
  default     = ".build"
}

variable "db_tier" {
  description = "Cloud SQL machine tier."
  type        = string
  default     = "db-custom-2-7680"
}

variable "db_availability" {
  description = "ZONAL or REGIONAL (high availability)."
  type        = string
  default     = "REGIONAL"
}

variable "redis_tier" {
  description = "Memorystore tier: BASIC or STANDARD_HA."
  type        = string
  default     = "STANDARD_HA"
}

variable "redis_memory_gb" {
  type    = number
  default = 1
}

variable "function_concurrency" {
  description = "Requests one function instance serves at once (gen2)."
  type        = number
  default     = 8
}

variable "function_max_instances" {
  description = "Instances each HTTP function may run at most. Cloud SQL's max_connections is sized from every function's (capacity.tf): raise the tier with it."
  type        = number
  default     = 5
}

variable "idempotency_ttl_s" {
  description = "Lifetime of an idempotency record (its expire_at)."
  type        = number
  default     = 86400
}

variable "erp_url" {
  description = "The ERP's HTTP endpoint; journal batches go to {erp_url}/batches."
  type        = string
  default     = ""
}

variable "erp_export_schedule" {
  description = "When Cloud Scheduler starts an ERP export pass (cron, UTC). A pass stops starting batches after LEDGER_ERP_PASS_BUDGET_S (270 s): every 5 minutes, a backlog is exported by passes back to back."
  type        = string
  default     = "*/5 * * * *"
}

variable "erp_reconcile_schedule" {
  description = "When Cloud Scheduler starts the daily ledger-ERP reconciliation (cron, UTC)."
  type        = string
  default     = "37 2 * * *" # off the 5-minute marks the export runs at
}

variable "lot_expiry_schedule" {
  description = "When Cloud Scheduler runs the lot expiry job that turns expired credit into breakage (cron, UTC)."
  type        = string
  default     = "*/5 * * * *"
}

variable "dormancy_schedule" {
  description = "When Cloud Scheduler runs dormant processing: warnings, marks and sweeps (cron, UTC)."
  type        = string
  default     = "15 3 * * *"
}

variable "ledger_reconcile_schedule" {
  description = "When Cloud Scheduler starts the daily incremental reconciliation of the ledger's invariants (cron, UTC)."
  type        = string
  default     = "0 3 * * *"
}

# Callers: docs/authentication-deployment.md

variable "function_callers" {
  description = <<-EOT
    Who calls each HTTP function (every functions/<name> whose main.py serves HTTP needs an
    entry): names of calling services, each a service account granted Cloud Run's invoker
    role on the function, and "end_users" where Identity Platform users call it. A function
    end users call lets everyone through to its own token check; the others let through
    only the named services' Google-signed tokens.
  EOT
  type        = map(list(string))
  default = {
    access   = [] # the operators' API: the operators alone (every_function_callers)
    topup    = ["payments"]
    addon    = ["payments"]
    usage    = ["metering"]
    bonus    = ["back_office"]
    void     = ["back_office"]
    wallets  = ["back_office", "end_users"]
    allocate = ["back_office", "end_users"]
    reclaim  = ["back_office", "end_users"]
    transfer = ["back_office", "end_users"]
  }
  validation {
    condition     = alltrue([for caller in flatten(values(var.function_callers)) : can(regex("^[a-z][a-z0-9_]{0,22}$", caller))])
    error_message = "A caller's name is lower case letters, digits and underscores, at most 23 characters (its service account is ledger-<name>)."
  }
}

variable "every_function_callers" {
  description = "Services that may call every HTTP function (the operators' account)."
  type        = list(string)
  default     = ["operators"]
  validation {
    condition     = alltrue([for caller in var.every_function_callers : can(regex("^[a-z][a-z0-9_]{0,22}$", caller)) && caller != "end_users"])
    error_message = "A caller's name is lower case letters, digits and underscores, at most 23 characters; end users are never everywhere."
  }
}

variable "caller_emails" {
  description = "Existing service accounts of callers, by caller name (a payment service in another project, say). Terraform creates ledger-<name> in this project for every caller not named here."
  type        = map(string)
  default     = {}
}

variable "caller_token_creators" {
  description = "Who may mint ID tokens as a caller's service account, by caller name: e.g. { operators = [\"group:ledger-operators@example.com\"] }. People call through it, as a person's own ID token can't carry the function's URL as its audience."
  type        = map(list(string))
  default     = {}
}

variable "identity_platform_project" {
  description = "The project whose Identity Platform (Firebase Auth) signs end users' ID tokens (issuer https://securetoken.google.com/<it>, audience <it>); null: project_id."
  type        = string
  default     = null
}

variable "service_token_audiences" {
  description = "More audiences a function accepts in services' Google-signed tokens, by function, beside its cloudfunctions.net URL (for instance its run.app URL from `terraform output function_run_urls`)."
  type        = map(list(string))
  default     = {}
}

variable "service_function_ingress" {
  description = "Where requests may come from for the functions only services call: ALLOW_INTERNAL_AND_GCLB (this project's VPC networks and a load balancer), ALLOW_INTERNAL_ONLY, or ALLOW_ALL when a caller runs outside them. The functions end users call accept all traffic."
  type        = string
  default     = "ALLOW_INTERNAL_AND_GCLB"
  validation {
    condition     = contains(["ALLOW_ALL", "ALLOW_INTERNAL_ONLY", "ALLOW_INTERNAL_AND_GCLB"], var.service_function_ingress)
    error_message = "One of ALLOW_ALL, ALLOW_INTERNAL_ONLY, ALLOW_INTERNAL_AND_GCLB."
  }
}

variable "end_user_function_max_instances" {
  description = "Instances each function end users call may run at most (null: function_max_instances). Anyone can send it requests, so this caps what a flood of unauthenticated ones costs."
  type        = number
  default     = null
}

# Balance actions as messages and event-driven automation: docs/messages.md, docs/automation.md

variable "action_publishers" {
  description = <<-EOT
    The services that publish balance actions as messages, by name: each its own topic
    (its publisher rights are on that topic alone, so the topic is the principal the
    actions function acts for) and its service account's email. null: the account of the
    caller of that name (var.function_callers), else one Terraform creates, ledger-<name>.
    Each publisher reads its own results from a subscription of the results topic.
  EOT
  type = map(object({
    topic = string
    email = optional(string)
  }))
  default = {
    payments = { topic = "balance-actions" }
    metering = { topic = "metering-usage" }
  }
  validation {
    condition     = alltrue([for service in keys(var.action_publishers) : can(regex("^[a-z][a-z0-9_]{0,22}$", service))])
    error_message = "A publisher's name is lower case letters, digits and underscores, at most 23 characters (its service account is ledger-<name>)."
  }
  validation {
    condition     = length(distinct([for publisher in values(var.action_publishers) : publisher.topic])) == length(var.action_publishers)
    error_message = "Each publisher has a topic of its own: the topic is who the message comes from."
  }
}

variable "action_max_deliveries" {
  description = "Deliveries of a pushed message (a balance action, a ledger event, an automation tick) before Pub/Sub moves it to the function's dead-letter topic (5 to 100)."
  type        = number
  default     = 5
  validation {
    condition     = var.action_max_deliveries >= 5 && var.action_max_deliveries <= 100
    error_message = "Pub/Sub allows 5 to 100 delivery attempts before dead-lettering."
  }
}

variable "push_function_max_instances" {
  description = "Instances each Pub/Sub-pushed function (actions, automation) may run at most; each holds up to LEDGER_DB_POOL_SIZE database connections."
  type        = number
  default     = 10
}

variable "automation_schedule" {
  description = "When Cloud Scheduler ticks the automation function, which runs the recurring allocations whose period has begun (cron, UTC)."
  type        = string
  default     = "* * * * *"
}

variable "payment_provider_url" {
  description = "The payment provider's HTTP endpoint that auto top-ups charge; its token is the payment-provider-token secret."
  type        = string
  default     = ""
}

variable "dead_letter_operators" {
  description = "Who runs `make dead-letters` (python -m common.dead_letters) against Google Cloud, e.g. [\"group:ledger-operators@example.com\"]: they read the dead letters, see which subscription each came through, replay balance actions to their topics and automation's ledger events to its replay topic."
  type        = list(string)
  default     = []
}

# --- platform (issue 17): state, network, Cloud SQL, Memorystore, Firestore; capacity.tf

variable "function_max_instances_by_name" {
  description = "Max instances of particular functions, by name, over function_max_instances and push_function_max_instances (e.g. { usage = 30 }). Scheduled functions always run one instance."
  type        = map(number)
  default     = {}
}

variable "function_db_pool_size" {
  description = "Database connections each instance of an HTTP or Pub/Sub-pushed function may hold (LEDGER_DB_POOL_SIZE): one per request it serves at once, so function_concurrency."
  type        = number
  default     = 8
}

variable "scheduled_function_db_pool_size" {
  description = "Database connections each scheduled function's one instance may hold (it serves one request at a time): its pass, and beside it the pacer's load reading, the events it publishes after commit, or the reconciliation's own connection."
  type        = number
  default     = 2
  validation {
    condition     = var.scheduled_function_db_pool_size >= 2
    error_message = "At least 2: a job's pass holds one connection while the pacer reads the database's load on another (docs/background-jobs.md)."
  }
}

variable "db_migration_connections" {
  description = "Connections kept for the migrations job beyond the functions' (capacity.tf)."
  type        = number
  default     = 5
}

variable "db_operator_connections" {
  description = "Connections kept for operators (psql, make ops, reconciliation by hand) beyond the functions'."
  type        = number
  default     = 10
}

variable "db_tier_memory_mb" {
  description = "The Cloud SQL tier's memory in MB, for a tier whose name doesn't say it (db-custom-<vCPUs>-<MB> and the shared-core tiers do); null: from the name."
  type        = number
  default     = null
}

variable "db_memory_mb_per_connection" {
  description = "Memory each Postgres connection is budgeted: max_connections may be at most the tier's memory divided by this."
  type        = number
  default     = 10
}

variable "db_log_min_duration_ms" {
  description = "Statements slower than this are logged with their duration (log_min_duration_statement); -1 turns it off."
  type        = number
  default     = 1000
}

variable "db_pgaudit_log" {
  description = "pgaudit's session logging (pgaudit.log). The ledger tables' writes are audited per object through db_pgaudit_role, not here, so each posting isn't logged twice."
  type        = string
  default     = "ddl,role"
}

variable "db_pgaudit_role" {
  description = "pgaudit's object-audit role (pgaudit.role): the migrations job creates it and grants it the writes on the ledger's tables, so those writes are logged. A role of its own, with no login and no members: whoever is a member holds its privileges (db/logins.py refuses one that has either)."
  type        = string
  default     = "ledger_pgaudit"
}

variable "db_backup_location" {
  description = "Where Cloud SQL keeps backups: a region or multi-region (e.g. asia); null: the instance's region."
  type        = string
  default     = null
}

variable "db_backups_retained" {
  description = "Daily backups kept."
  type        = number
  default     = 14
}

variable "db_transaction_log_days" {
  description = "Days of write-ahead log kept for point-in-time recovery (1 to 7)."
  type        = number
  default     = 7
  validation {
    condition     = var.db_transaction_log_days >= 1 && var.db_transaction_log_days <= 7
    error_message = "Cloud SQL keeps 1 to 7 days of transaction logs."
  }
}

variable "db_maintenance_window" {
  description = "When Cloud SQL may restart for maintenance: day (1 = Monday .. 7 = Sunday), hour (UTC) and update track (canary, stable or week5)."
  type = object({
    day          = number
    hour         = number
    update_track = string
  })
  default = { day = 7, hour = 19, update_track = "stable" } # Sunday 02:00 in Jakarta
}

variable "redis_maintenance_window" {
  description = "When Memorystore may be updated: day (MONDAY .. SUNDAY) and hour (UTC)."
  type = object({
    day  = string
    hour = number
  })
  default = { day = "SUNDAY", hour = 20 }
}

# --- identities and triggers (issue 17)

variable "max_event_age_s" {
  description = <<-EOT
    Per Pub/Sub-triggered function (every cloud_event folder under functions/, and no
    other; a plan stops otherwise): the age in seconds past which a delivered event is
    dropped rather than processed (LEDGER_MAX_EVENT_AGE_S), so a message that keeps
    failing can't be retried forever. A tick older than about its period is useless (the
    next one does the same work); a balance action or a ledger event is worth retrying
    longer than the retries before its dead letter take (var.action_max_deliveries
    pushes, 10 s to 600 s apart).
  EOT
  type        = map(number)
  default = {
    outbox_sweeper   = 120   # ticked every minute
    lot_expiry       = 600   # every 5 minutes
    erp_export       = 900   # every 5 minutes
    erp_reconcile    = 86400 # daily
    dormancy         = 86400 # daily
    ledger_reconcile = 86400 # daily
    automation       = 3600  # ledger events and minutely ticks: a low balance an hour old is still worth acting on
    actions          = 86400 # balance actions: dead-lettered well before, after their deliveries
  }
  validation {
    condition     = alltrue([for age in values(var.max_event_age_s) : age >= 60])
    error_message = "An event must be allowed at least 60 s: Pub/Sub's first redelivery comes 10 s or more after a failure."
  }
}

variable "gateway_region" {
  description = "Where API Gateway serves the end users' functions. It runs in fewer regions than Cloud Functions (`gcloud api-gateway locations list`); pick the nearest to var.region."
  type        = string
  default     = "asia-northeast1"
}

# --- monitoring (issue 17): alert thresholds and where alerts go (docs/monitoring.md)

variable "alert_notification_channel_ids" {
  description = "Existing Cloud Monitoring notification channels every alert policy notifies, by full name (projects/PROJECT/notificationChannels/ID)."
  type        = list(string)
  default     = []
}

variable "alert_emails" {
  description = "Email addresses to create a notification channel for; every alert policy notifies them too."
  type        = list(string)
  default     = []
}

variable "alert_outbox_backlog_age_s" {
  description = "Alert when the oldest unpublished ledger event is older than this (seconds). The sweeper runs every minute and leaves events younger than LEDGER_OUTBOX_SWEEP_MIN_AGE_S to the relay."
  type        = number
  default     = 300
}

variable "alert_outbox_backlog_duration_s" {
  description = "For how long the outbox backlog must stay above its threshold before the alert opens (seconds)."
  type        = number
  default     = 300
}

variable "alert_outbox_sweeper_silent_s" {
  description = "Alert when no outbox sweep has logged for this long (seconds; it runs every minute)."
  type        = number
  default     = 900
}

variable "alert_erp_export_silent_s" {
  description = "Alert when no ERP export pass has logged for this long (seconds; it runs every 5 minutes by default)."
  type        = number
  default     = 3600
}

variable "alert_erp_parked_batches" {
  description = "Alert when more ERP batches than this are parked."
  type        = number
  default     = 0
}

variable "alert_reconcile_differences" {
  description = "Alert when the reconciliation finds more differences than this."
  type        = number
  default     = 0
}

variable "alert_ledger_invariant_violations" {
  description = "Alert when the daily reconciliation finds more of the ledger's invariants broken than this."
  type        = number
  default     = 0
}

variable "alert_reconciliation_overdue_s" {
  description = "Alert when no reconciliation has found the ledger clean for longer than this (seconds; the daily run plus two hours)."
  type        = number
  default     = 93600
}

variable "alert_5xx_ratio" {
  description = "Alert when a function's 5xx responses exceed this share of its requests (0 to 1)."
  type        = number
  default     = 0.05
  validation {
    condition     = var.alert_5xx_ratio > 0 && var.alert_5xx_ratio < 1
    error_message = "A share of requests, between 0 and 1."
  }
}

variable "alert_5xx_duration_s" {
  description = "For how long the 5xx share must stay above its threshold (seconds)."
  type        = number
  default     = 300
}

variable "alert_latency_p95_ms" {
  description = "Alert when an HTTP function's p95 latency exceeds this (milliseconds)."
  type        = number
  default     = 1000
}

variable "alert_latency_duration_s" {
  description = "For how long the p95 latency must stay above its threshold (seconds)."
  type        = number
  default     = 600
}

variable "alert_dead_letters" {
  description = "Alert when a dead-letter subscription holds more undelivered messages than this."
  type        = number
  default     = 0
}

variable "alert_events_dropped_too_old" {
  description = "Alert when a function drops more events than this in 5 minutes for being older than LEDGER_MAX_EVENT_AGE_S."
  type        = number
  default     = 0
}

variable "alert_db_cpu_utilization" {
  description = "Alert when Cloud SQL's CPU utilization stays above this (0 to 1)."
  type        = number
  default     = 0.8
  validation {
    condition     = var.alert_db_cpu_utilization > 0 && var.alert_db_cpu_utilization <= 1
    error_message = "A utilization, between 0 and 1."
  }
}

variable "alert_db_connections_ratio" {
  description = "Alert when Cloud SQL's backends exceed this share of max_connections (0 to 1)."
  type        = number
  default     = 0.8
  validation {
    condition     = var.alert_db_connections_ratio > 0 && var.alert_db_connections_ratio <= 1
    error_message = "A share of max_connections, between 0 and 1."
  }
}

variable "alert_db_duration_s" {
  description = "For how long Cloud SQL's CPU or connections must stay above their thresholds (seconds)."
  type        = number
  default     = 600
}

# --- deploy and migrations job (issue 17)

variable "migrations_image_tag" {
  description = "The migrations image's tag in the ledger's Artifact Registry repository: its content hash, computed and passed by `make deploy` (infra/deploy.py)."
  type        = string
  default     = ""
}

# --- Terraform fixes (issue 17): warm instances, the operators' database login

variable "http_function_min_instances" {
  description = "Instances each HTTP function keeps warm (no cold start on the first request), billed while idle: 0 in dev, 1 in production."
  type        = number
  default     = 1
  validation {
    condition     = var.http_function_min_instances >= 0
    error_message = "0 or more."
  }
}

variable "db_operator_group" {
  description = "The Google group (its email, e.g. ledger-operators@example.com) whose members log in to Cloud SQL as the ledger_operator role (runbooks, python -m common.ops), each as their own IAM user; null: no operators' login."
  type        = string
  default     = null
  validation {
    condition     = var.db_operator_group == null || can(regex("^[^@:\\s]+@[^@\\s]+\\.[a-z]+$", var.db_operator_group))
    error_message = "The group's email alone (no \"group:\" prefix)."
  }
}

# --- background jobs beside live traffic (issue 20): docs/background-jobs.md

variable "job_pacing" {
  description = "How the background jobs (the scheduled functions) pace their batches (LEDGER_JOB_PACING): adaptive (the duty halves under live load, grows back when quiet), fixed (always job_duty_cap) or off (never rests)."
  type        = string
  default     = "adaptive"
  validation {
    condition     = contains(["adaptive", "fixed", "off"], var.job_pacing)
    error_message = "One of adaptive, fixed, off."
  }
}

variable "job_duty_cap" {
  description = "The most of each second a background job may be busy (LEDGER_JOB_DUTY_CAP), above 0 and at most 1."
  type        = number
  default     = 0.25
  validation {
    condition     = var.job_duty_cap > 0 && var.job_duty_cap <= 1
    error_message = "A share of each second: above 0, at most 1."
  }
}

variable "job_duty_floor" {
  description = "The least of each second a background job stays busy however loaded the database (LEDGER_JOB_DUTY_FLOOR): what bounds a backlog's time to clear. Above 0, at most job_duty_cap."
  type        = number
  default     = 0.05
  validation {
    condition     = var.job_duty_floor > 0 && var.job_duty_floor <= 1
    error_message = "A share of each second: above 0, at most 1 (and at most job_duty_cap: the job functions' precondition)."
  }
}

variable "job_busy_sessions" {
  description = "More sessions than this inside a transaction (other than the job's own) and the database counts as busy, and the jobs' duty halves (LEDGER_JOB_BUSY_SESSIONS)."
  type        = number
  default     = 4
  validation {
    condition     = var.job_busy_sessions >= 0 && floor(var.job_busy_sessions) == var.job_busy_sessions
    error_message = "A whole number of sessions, 0 or more."
  }
}

variable "db_read_replica" {
  description = "A Cloud SQL read replica of the ledger's database, for the operators' whole-history reads (the hash chain's verify, reports) off the primary: off in dev, on in prod (docs/background-jobs.md)."
  type        = bool
  default     = false
}

variable "db_read_replica_tier" {
  description = "The read replica's machine tier; null: db_tier. Its max_connections is the primary's (Postgres requires it), but only the operators connect, so a smaller tier holds it."
  type        = string
  default     = null
}

variable "db_read_replica_max_standby_delay_s" {
  description = "How long the replica holds back replaying a change that conflicts with a running query before it cancels the query (max_standby_streaming_delay and max_standby_archive_delay): long enough for a whole-history read; the replica lags by up to this meanwhile."
  type        = number
  default     = 900
  validation {
    condition     = var.db_read_replica_max_standby_delay_s >= 30 && var.db_read_replica_max_standby_delay_s <= 3600
    error_message = "30 s (Postgres's default) to an hour."
  }
}
