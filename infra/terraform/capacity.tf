# How many database connections the functions can open, and so Cloud SQL's
# max_connections (database.tf): every function's max instances times its pool size,
# summed, plus the migrations job's and the operators' reserve and Postgres's own slots
# for superusers. Cloud Run may start every instance a function allows; each opens up to
# LEDGER_DB_POOL_SIZE connections (common/adapters/postgres.py's Pool), so a smaller
# max_connections would refuse connections exactly when traffic peaks.
# Locals only, no provider: tests/unit/test_capacity.py evaluates them with
# `terraform console` for the defaults and for each envs/*.tfvars.

locals {
  # Scheduled functions: ticked, and pushed nothing else. One pass at a time (a racing
  # pass stops at the cursor anyway), each pass one request, with one connection beside it
  # for the events it publishes after commit.
  scheduled_functions = toset([
    for name, declared in local.function_declarations : name
    if declared.tick_topic_setting != null && length(declared.push_topic_settings) == 0
  ])

  # One pass at a time: a second instance would only race the first to the same cursor.
  # And one request at a time on that instance: a tick pushed while a pass runs is
  # refused (429) and pushed again later by Pub/Sub, instead of starting a second pass
  # beside the first with a second pool of connections (docs/background-jobs.md).
  scheduled_function_instances   = 1
  scheduled_function_concurrency = 1

  # function name -> the requests one of its instances serves at once
  # (max_instance_request_concurrency): a scheduled job's one pass, else
  # var.function_concurrency, which function_db_pool_size matches
  function_request_concurrency = {
    for name in local.function_names :
    name => contains(local.scheduled_functions, name) ? local.scheduled_function_concurrency : var.function_concurrency
  }

  # function name -> the most instances it may run (every function resource uses this)
  function_max_instances_all = merge(
    local.function_max_instances, # HTTP functions (auth.tf: end users' functions have their own cap)
    { for name in keys(local.push_functions) : name => var.push_function_max_instances },
    { for name, count in var.function_max_instances_by_name : name => count if contains(local.function_names, name) },
    { for name in local.scheduled_functions : name => local.scheduled_function_instances },
  )

  # function name -> its LEDGER_DB_POOL_SIZE: one connection per request it serves at
  # once; a scheduled job's, its one pass and the pacer's load reading beside it (or the
  # reconciliation's own connection, which it opens outside the pool)
  function_pool_size = {
    for name in local.function_names :
    name => contains(local.scheduled_functions, name) ? var.scheduled_function_db_pool_size : var.function_db_pool_size
  }

  function_connections = { for name in local.function_names : name => local.function_max_instances_all[name] * local.function_pool_size[name] }

  # Postgres keeps superuser_reserved_connections (3 by default, not changed here) of
  # max_connections for superusers: the functions can't use them.
  db_superuser_reserved_connections = 3

  max_connections = (
    sum(values(local.function_connections))
    + var.db_migration_connections
    + var.db_operator_connections
    + local.db_superuser_reserved_connections
  )

  # The tier's memory: db-custom-<vCPUs>-<MB>, or a shared-core tier's documented size;
  # any other tier needs var.db_tier_memory_mb.
  db_shared_core_memory_mb = { "db-f1-micro" = 614, "db-g1-small" = 1741 }
  db_tier_memory_mb = coalesce(
    var.db_tier_memory_mb,
    lookup(local.db_shared_core_memory_mb, var.db_tier, null),
    try(tonumber(regex("^db-custom-[0-9]+-([0-9]+)$", var.db_tier)[0]), null),
    0,
  )
  # What the tier can hold: each connection is a Postgres process with its own memory
  # (work_mem, caches); beyond this the instance risks running out of memory at the very
  # moment every function is scaled out. database.tf refuses a plan that exceeds it.
  db_connection_ceiling = floor(local.db_tier_memory_mb / var.db_memory_mb_per_connection)

  # The read replica (database.tf, var.db_read_replica). Postgres refuses to run a hot
  # standby whose max_connections is below its primary's, so it takes the primary's.
  # Who connects to it is the operators' whole-history reads (their reserve) and
  # Postgres's superuser slots; no function is given its address. That budget is what
  # its own tier must hold (a precondition in database.tf).
  db_read_replica_tier            = coalesce(var.db_read_replica_tier, var.db_tier)
  db_read_replica_max_connections = local.max_connections
  db_read_replica_connections     = var.db_operator_connections + local.db_superuser_reserved_connections
  db_read_replica_tier_memory_mb = (var.db_read_replica_tier == null ? local.db_tier_memory_mb : coalesce(
    lookup(local.db_shared_core_memory_mb, var.db_read_replica_tier, null),
    try(tonumber(regex("^db-custom-[0-9]+-([0-9]+)$", var.db_read_replica_tier)[0]), null),
    0,
  ))
  db_read_replica_connection_ceiling = floor(local.db_read_replica_tier_memory_mb / var.db_memory_mb_per_connection)
}
