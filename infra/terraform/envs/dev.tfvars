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
http_function_min_instances = 0 # cold starts are fine here; idle instances are not free

db_backups_retained     = 7
db_transaction_log_days = 3

# No read replica: a dev ledger's history is small enough to read on the primary
# (docs/background-jobs.md).
db_read_replica = false

# Where alerts go (docs/monitoring.md): an email channel per address, or existing channels
# by id (alert_notification_channel_ids). Traffic is low here, so latency and the share of
# 5xx answers alert later than in production.
alert_emails         = ["ledger-dev-alerts@example.com"] # your team's address
alert_latency_p95_ms = 2000
alert_5xx_ratio      = 0.2


# The functions only services call take requests from anywhere (IAM's invoker check and
# the function's own token check still apply), so the smoke check and operators reach
# them from a laptop.
service_function_ingress = "ALLOW_ALL"
# Who may act as the operators' account (docs/authentication-deployment.md), and whose
# members log in to Cloud SQL as ledger_operator: your team's groups.
caller_token_creators = { operators = ["group:ledger-dev-operators@example.com"] }
db_operator_group     = "ledger-dev-operators@example.com"
