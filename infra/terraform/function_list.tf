# The functions, read from their folders as infra/functions.py reads them: every
# functions/<name>/main.py is one, named by its folder (also its entry point). The
# decorator in main.py tells an HTTP function from one Pub/Sub triggers; deploy.json,
# where present, names the common/config.py Settings fields of its tick topic, of the
# topics pushed to it and of its dead-letter topic, and its database login.
# tests/unit/test_function_list.py evaluates these locals (with variables.tf) with
# `terraform console` and checks they agree with infra/functions.py.

locals {
  functions_dir  = "${path.module}/../../functions"
  function_names = toset([for main in fileset(local.functions_dir, "*/main.py") : dirname(main)])
  function_main  = { for name in local.function_names : name => file("${local.functions_dir}/${name}/main.py") }
  function_declarations = {
    for name in local.function_names : name => merge(
      { tick_topic_setting = null, tick_schedule_setting = null, push_topic_settings = [], dead_letter_topic_setting = null, database_login = null },
      jsondecode(fileexists("${local.functions_dir}/${name}/deploy.json") ? file("${local.functions_dir}/${name}/deploy.json") : "{}"),
    )
  }

  http_functions = toset([
    for name in local.function_names : name if length(regexall("(?m)^@functions_framework\\.http\\b", local.function_main[name])) > 0
  ])
  # Pub/Sub-triggered function -> the name of its tick topic (pubsub.tf), which is the
  # default of the Settings field it declares, spelled like the field:
  # outbox_sweep_tick_topic -> outbox-sweep-tick.
  tick_function_topics = {
    for name in local.function_names :
    name => replace(trimsuffix(local.function_declarations[name].tick_topic_setting, "_topic"), "_", "-")
    if length(regexall("(?m)^@functions_framework\\.cloud_event\\b", local.function_main[name])) > 0
    && local.function_declarations[name].tick_topic_setting != null
  }

  # The topics a Settings field names: its default in common/config.py (the test checks),
  # except the action topics, which are the publishing services' own
  # (var.action_publishers). Unlike tick topics, these are not spelled from the field.
  setting_topics = {
    events_topic                 = ["ledger-events"]
    action_topics                = sort([for publisher in values(var.action_publishers) : publisher.topic])
    action_results_topic         = ["balance-action-results"]
    actions_dead_letter_topic    = ["balance-actions-dead-letter"]
    automation_dead_letter_topic = ["automation-dead-letter"]
    automation_replay_topic      = ["automation-replay"]
    notifications_topic          = ["ledger-notifications"]
  }
  # Pub/Sub-triggered function -> the topics pushed to it and its dead-letter topic. Every
  # one of them, ticked or pushed messages or both, takes each topic through a push
  # subscription of our own (pubsub.tf), not an Eventarc trigger, whose subscription can't
  # have a dead-letter policy. A function without a dead_letter_topic_setting (the tick
  # functions) gets a dead-letter topic named from it: outbox_sweeper ->
  # outbox-sweeper-dead-letter (infra/functions.py dead_letter_topic spells it alike).
  push_functions = {
    for name, declared in local.function_declarations :
    name => {
      topics = distinct(concat(
        flatten([for setting in declared.push_topic_settings : lookup(local.setting_topics, setting, [])]),
        contains(keys(local.tick_function_topics), name) ? [local.tick_function_topics[name]] : [],
      ))
      dead_letter_topic = (declared.dead_letter_topic_setting == null
        ? "${replace(name, "_", "-")}-dead-letter"
      : one(lookup(local.setting_topics, declared.dead_letter_topic_setting, [null])))
      # ticked alone: one pass at a time, for as long as a pass may take
      ticked_only = (length(declared.push_topic_settings) == 0)
    }
    if length(regexall("(?m)^@functions_framework\\.cloud_event\\b", local.function_main[name])) > 0
  }
  # The Settings fields some deploy.json names that setting_topics doesn't know: a plan
  # stops on them (invokers.tf) rather than deploying a function nothing is pushed to.
  unknown_topic_settings = setsubtract(
    compact(flatten([for name in keys(local.push_functions) : concat(local.function_declarations[name].push_topic_settings, [local.function_declarations[name].dead_letter_topic_setting])])),
    keys(local.setting_topics),
  )
  # One push subscription per (pushed function, topic), named "<topic>-<function>" as the
  # local stack names it (pubsub.tf), and the dead-letter topics they move messages to.
  push_subscriptions = merge([
    for function, pushed in local.push_functions : {
      for topic in pushed.topics : "${topic}-${function}" => { function = function, topic = topic, dead_letter_topic = pushed.dead_letter_topic }
    }
  ]...)
  dead_letter_topics = toset([for pushed in values(local.push_functions) : pushed.dead_letter_topic])
  # Each database login (deploy.json's database_login, infra/functions.py DATABASE_LOGINS):
  # its own service account and IAM database user (iam.tf, database.tf), the database
  # role that user is granted after migrating (db/schema/99_grants.sql), and the Google
  # APIs its functions use beside Cloud SQL project-wide (the topics each publishes to are
  # granted on the topics: iam.tf).
  database_logins = {
    poster       = { account_id = "ledger-poster", db_role = "ledger_poster", project_roles = ["roles/datastore.user"] }
    wallet_admin = { account_id = "ledger-wallet-admin", db_role = "ledger_wallet_admin", project_roles = [] }
    access_admin = { account_id = "ledger-access", db_role = "ledger_access", project_roles = [] }
    relay        = { account_id = "ledger-relay", db_role = "ledger_relay", project_roles = [] }
    jobs         = { account_id = "ledger-jobs", db_role = "ledger_jobs", project_roles = [] }
    exporter     = { account_id = "ledger-erp-exporter", db_role = "erp_exporter", project_roles = [] }
    # its auto top-ups and allocations go through the idempotency records, as any posting
    automation = { account_id = "ledger-automation", db_role = "ledger_automation", project_roles = ["roles/datastore.user"] }
    # the actions function: a poster's rights, its own account, so that it alone may
    # publish results and dead letters (iam.tf); idempotency records and failures in Firestore
    messages = { account_id = "ledger-messages", db_role = "ledger_messages", project_roles = ["roles/datastore.user"] }
    # the daily reconciliation: reads what the incremental checks read and moves their
    # checkpoint (db/schema/99_grants.sql); no other Google API, publishes nothing
    reconciler = { account_id = "ledger-reconciler", db_role = "ledger_reconciler", project_roles = [] }
  }
  # login -> the functions that log in as it
  database_login_functions = {
    for login in keys(local.database_logins) :
    login => toset([for name, declared in local.function_declarations : name if declared.database_login == login])
  }
  # HTTP functions that sign paging cursors (their main.py settles `bootstrap.cursors()`
  # at start): they get the cursor key.
  cursor_functions = toset([
    for name in local.http_functions : name if length(regexall("(?m)^bootstrap\\.cursors\\(\\)", local.function_main[name])) > 0
  ])
}
