# The smallest sensible setup: one zone, a 1 vCPU database, Redis without a replica, and
# few instances per function (max_connections follows: docs/infrastructure.md).
# No secret belongs here: secrets are added with gcloud (docs/deploy.md).
project_id = "my-ledger-dev" # your dev project

db_tier         = "db-custom-1-3840"
db_availability = "ZONAL"
redis_tier      = "BASIC"
redis_memory_gb = 1

function_max_instances      = 2
push_function_max_instances = 2

db_backups_retained     = 7
db_transaction_log_days = 3
