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
