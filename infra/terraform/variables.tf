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
  type    = number
  default = 50
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
  description = "When Cloud Scheduler starts an ERP export pass (cron, UTC)."
  type        = string
  default     = "*/15 * * * *"
}

variable "erp_reconcile_schedule" {
  description = "When Cloud Scheduler starts the daily ledger-ERP reconciliation (cron, UTC)."
  type        = string
  default     = "30 2 * * *"
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
  description = "Who runs `make dead-letters` (python -m common.dead_letters) against Google Cloud, e.g. [\"group:ledger-operators@example.com\"]: they read the dead letters, see which subscription each came through, and replay balance actions to their topics."
  type        = list(string)
  default     = []
}

# --- deploy and migrations job (issue 17)

variable "migrations_image_tag" {
  description = "The migrations image's tag in the ledger's Artifact Registry repository: its content hash, computed and passed by `make deploy` (infra/deploy.py)."
  type        = string
  default     = ""
}
