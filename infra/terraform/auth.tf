# Who may call each HTTP function, and which tokens it trusts. Every HTTP function checks
# the bearer token itself (common/auth, against LEDGER_AUTH_ISSUERS); Cloud Run's invoker
# IAM check stands in front of every function (invokers.tf). End users reach theirs
# through API Gateway (gateway.tf), which checks their token first and calls as its own
# service account: docs/authentication-deployment.md. Locals only, no provider, so that
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

  # API Gateway calls the functions end users call at their public URL, from outside the
  # project's networks, so their ingress is ALLOW_ALL; Cloud Run's IAM check still lets
  # only the gateway's and the named services' tokens through. Their own cap of
  # instances bounds what end users' traffic may cost. The other functions take requests
  # only from where var.service_function_ingress says.
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

# API Gateway's OpenAPI 2.0 document (gateway.tf), built from docs/openapi.json, which
# `make openapi` writes from the routes the code serves (tests/unit/test_openapi.py keeps
# it current): each operation of a function end users call, under the same path, sent to
# that function's URL with the path appended (a function answers on its own name's path:
# infra/openapi), with a token of the gateway's account for that URL, the audience the
# function and Cloud Run accept. Only requests carrying a valid Identity Platform ID
# token get through; the gateway passes the user's token on in X-Forwarded-Authorization.
locals {
  api_paths = jsondecode(file("${path.module}/../../docs/openapi.json")).paths
  gateway_operations = flatten([
    for path, item in local.api_paths : [
      for method, operation in item : { path = path, method = method, function = operation.tags[0], operation_id = operation.operationId }
      if contains(["get", "post", "put", "patch", "delete"], method) && contains(local.end_user_functions, try(operation.tags[0], ""))
    ]
  ])
  gateway_openapi = jsonencode({
    swagger  = "2.0"
    info     = { title = "${var.name} end users", version = "1" }
    schemes  = ["https"]
    produces = ["application/json"]
    securityDefinitions = {
      identity_platform = {
        type               = "oauth2"
        flow               = "implicit"
        authorizationUrl   = ""
        x-google-issuer    = "https://securetoken.google.com/${local.identity_platform_project}"
        x-google-jwks_uri  = "https://www.googleapis.com/service_accounts/v1/metadata/x509/securetoken@system.gserviceaccount.com"
        x-google-audiences = local.identity_platform_project
      }
    }
    paths = merge([
      for path in distinct([for operation in local.gateway_operations : operation.path]) : {
        (path) = merge(
          # OpenAPI 2.0 declares every {name} of a path template
          length(regexall("\\{(\\w+)\\}", path)) == 0 ? {} : {
            parameters = [for name in regexall("\\{(\\w+)\\}", path) : { name = name[0], in = "path", required = true, type = "string" }]
          },
          merge([
            for operation in local.gateway_operations : {
              (operation.method) = {
                operationId = operation.operation_id
                security    = [{ identity_platform = [] }]
                x-google-backend = {
                  address          = local.function_urls[operation.function]
                  path_translation = "APPEND_PATH_TO_ADDRESS"
                  jwt_audience     = local.function_urls[operation.function]
                  # the functions answer within 30 s (functions.tf); the gateway's own
                  # default would cut them off at 15
                  deadline = 30
                }
                responses = { default = { description = "the function's answer: docs/openapi.json" } }
              }
            } if operation.path == path
          ]...),
        )
      }
    ]...)
  })
}
