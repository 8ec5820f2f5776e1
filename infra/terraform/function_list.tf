# The functions, read from their folders as infra/functions.py reads them: every
# functions/<name>/main.py is one, named by its folder (also its entry point). The
# decorator in main.py tells an HTTP function from one that Cloud Scheduler's ticks
# trigger; deploy.json, where present, names the common/config.py Settings field of the
# tick topic and the database login. tests/unit/test_function_list.py evaluates these
# locals with `terraform console` and checks they agree with infra/functions.py.

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
  # Each database login (deploy.json's database_login, infra/functions.py DATABASE_LOGINS):
  # its own service account and IAM database user (iam.tf, database.tf), the database
  # role that user is granted after migrating (db/schema/99_grants.sql), and the Google
  # APIs its functions use beside Cloud SQL.
  database_logins = {
    poster       = { account_id = "ledger-poster", db_role = "ledger_poster", project_roles = ["roles/datastore.user", "roles/pubsub.publisher"] }
    wallet_admin = { account_id = "ledger-wallet-admin", db_role = "ledger_wallet_admin", project_roles = [] }
    access_admin = { account_id = "ledger-access", db_role = "ledger_access", project_roles = [] }
    relay        = { account_id = "ledger-relay", db_role = "ledger_relay", project_roles = ["roles/pubsub.publisher"] }
    jobs         = { account_id = "ledger-jobs", db_role = "ledger_jobs", project_roles = ["roles/pubsub.publisher"] }
    exporter     = { account_id = "ledger-erp-exporter", db_role = "erp_exporter", project_roles = [] }
    automation   = { account_id = "ledger-automation", db_role = "ledger_automation", project_roles = ["roles/datastore.user"] }
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
