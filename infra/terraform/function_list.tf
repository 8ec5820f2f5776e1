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
      { tick_topic_setting = null, database_login = "functions" },
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
  }
  # Functions that log in to the database as the ERP export's own user.
  exporter_functions = toset([for name, declared in local.function_declarations : name if declared.database_login == "exporter"])
  # HTTP functions that sign paging cursors (their main.py settles `bootstrap.cursors()`
  # at start): they get the cursor key.
  cursor_functions = toset([
    for name in local.http_functions : name if length(regexall("(?m)^bootstrap\\.cursors\\(\\)", local.function_main[name])) > 0
  ])
  # HTTP functions that log in as the operators' access function's own user.
  access_functions = toset([for name, declared in local.function_declarations : name if declared.database_login == "access_admin"])
}
