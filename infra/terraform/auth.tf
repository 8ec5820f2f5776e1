# Who may call each HTTP function, and which tokens it trusts. Every HTTP function checks
# the bearer token itself (common/auth, against LEDGER_AUTH_ISSUERS); Cloud Run's invoker
# IAM check stands in front of the functions that only services call (invokers.tf). Why
# the functions end users call let everyone through to that check:
# docs/authentication-deployment.md. Locals only, no provider, so that
# tests/unit/test_terraform.py can evaluate them with `terraform console`.

locals {
  # A gen2 function's cloudfunctions.net URL follows from its region, project and name, so
  # it can sit in the function's own environment. Its run.app URL exists only once the
  # service does: putting it there would be a cycle. Services mint their tokens for this
  # URL; the function's postcondition (functions.tf) checks Google agrees.
  function_urls = {
    for name in local.http_functions : name => "https://${var.region}-${var.project_id}.cloudfunctions.net/${replace(name, "_", "-")}"
  }
  service_token_audiences = {
    for name in local.http_functions : name => concat([local.function_urls[name]], lookup(var.service_token_audiences, name, []))
  }

  # "end_users" among a function's callers: Identity Platform users call it.
  end_user_functions = toset([
    for name in local.http_functions : name if contains(lookup(var.function_callers, name, []), "end_users")
  ])

  # End users' apps reach their functions from anywhere, and an unauthenticated request
  # still starts or occupies an instance until the function refuses it: a cap of their own
  # bounds what a flood costs. The other functions take requests only from where
  # var.service_function_ingress says.
  function_ingress = {
    for name in local.http_functions : name => contains(local.end_user_functions, name) ? "ALLOW_ALL" : var.service_function_ingress
  }
  function_max_instances = {
    for name in local.http_functions :
    name => contains(local.end_user_functions, name) ? coalesce(var.end_user_function_max_instances, var.function_max_instances) : var.function_max_instances
  }

  # The callers that hold a service account (all but end_users), for each function.
  function_invokers = {
    for name in local.http_functions :
    name => setsubtract(toset(concat(lookup(var.function_callers, name, []), var.every_function_callers)), ["end_users"])
  }
  invoker_bindings = merge([
    for name, callers in local.function_invokers : { for caller in callers : "${name} ${caller}" => { function = name, caller = caller } }
  ]...)
  service_callers = toset(flatten([for callers in values(local.function_invokers) : tolist(callers)]))

  identity_platform_project = coalesce(var.identity_platform_project, var.project_id)

  # One JSON list of {issuer, certs_url, audiences} per function. Google-signed ID tokens of
  # service accounts everywhere; Identity Platform tokens only where end users call, as
  # nothing else could reach the other functions with one.
  auth_issuers = {
    for name in local.http_functions : name => jsonencode(concat(
      [{
        issuer    = "https://accounts.google.com"
        certs_url = "https://www.googleapis.com/oauth2/v1/certs"
        audiences = local.service_token_audiences[name]
      }],
      contains(local.end_user_functions, name) ? [{
        issuer    = "https://securetoken.google.com/${local.identity_platform_project}"
        certs_url = "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"
        audiences = [local.identity_platform_project]
      }] : [],
    ))
  }
}
