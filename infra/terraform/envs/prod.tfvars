# Production: a regional (high-availability) database and Redis with a replica, sized
# for the instances below; max_connections follows (docs/infrastructure.md). Backups kept
# in the multi-region, away from the instance's region.
# No secret belongs here: secrets are added with gcloud (docs/deploy.md).
project_id = "my-ledger-prod" # your production project

db_tier            = "db-custom-4-16384"
db_availability    = "REGIONAL"
db_backup_location = "asia"
redis_tier         = "STANDARD_HA"
redis_memory_gb    = 1

function_max_instances          = 10
end_user_function_max_instances = 20
push_function_max_instances     = 10
function_max_instances_by_name  = { usage = 30 }

db_backups_retained     = 30
db_transaction_log_days = 7
