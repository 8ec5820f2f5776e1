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
http_function_min_instances     = 1 # one warm instance per HTTP function: no cold start
function_max_instances_by_name  = { usage = 30 }

db_backups_retained     = 30
db_transaction_log_days = 7

# A read replica for the operators' whole-history reads (the hash chain's verify,
# reports), smaller than the primary: only the operators connect to it
# (docs/background-jobs.md).
db_read_replica      = true
db_read_replica_tier = "db-custom-2-7680"

# Where alerts go (docs/monitoring.md): the on-call's channels by id, and/or emails.
# Thresholds keep variables.tf's defaults.
alert_notification_channel_ids = []                            # e.g. ["projects/my-ledger-prod/notificationChannels/123"]
alert_emails                   = ["ledger-oncall@example.com"] # your on-call
gateway_region                 = "asia-northeast1"             # API Gateway's nearest region to var.region

# Who may act as the operators' account (docs/authentication-deployment.md), and whose
# members log in to Cloud SQL as ledger_operator: the on-call's groups.
caller_token_creators = { operators = ["group:ledger-operators@example.com"] }
db_operator_group     = "ledger-operators@example.com"
