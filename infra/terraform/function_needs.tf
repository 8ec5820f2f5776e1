# What each function needs of the platform beyond its database login: Redis (redis.tf)
# and a way out to the internet through the NAT's address (network.tf). Read from the
# functions' folders, like function_list.tf. Locals only, no provider, so that
# tests/unit/test_platform.py can evaluate them with `terraform console`.

locals {
  # The functions that talk to Redis: every HTTP function (the callers' rate limits,
  # common/http.py) and every function balance actions are pushed to (a usage takes the
  # wallet's lock, common/service.py).
  redis_functions = toset(concat(
    tolist(local.http_functions),
    [for name in keys(local.push_functions) : name if contains(local.function_declarations[name].push_topic_settings, "action_topics")],
  ))
  redis_logins = toset([for name in local.redis_functions : local.function_declarations[name].database_login])

  # function name -> its connector egress. The functions that call outside Google, by
  # their login: the ERP export and reconciliation (LEDGER_ERP_URL), and automation's auto
  # top-ups (LEDGER_PAYMENT_PROVIDER_URL), send all traffic through the VPC, and so out of
  # the NAT's address; the rest only private ranges (Google APIs stay direct).
  function_vpc_egress = {
    for name in local.function_names :
    name => (
      local.function_declarations[name].database_login == "exporter" || local.function_declarations[name].database_login == "automation"
      ? "ALL_TRAFFIC" : "PRIVATE_RANGES_ONLY"
    )
  }
}
