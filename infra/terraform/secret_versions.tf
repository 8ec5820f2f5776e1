# Secrets first. A function that mounts a secret at `latest` fails to deploy while the
# secret has no version, and the operator adds these values out of band (never in code or
# state). So every function waits for these reads: on a first apply they run after the
# secrets are created and stop the apply, naming the secret, before any function is
# deployed; the deploy command avoids that by creating the secrets alone first and
# checking each has a version (docs/infrastructure.md, "First apply"). Only the version's
# metadata is read (fetch_secret_data = false): the values stay out of Terraform's state.
# redis-auth is not here: Terraform writes its version itself (redis.tf).

data "google_secret_manager_secret_version" "mounted" {
  for_each = {
    cursor-key             = google_secret_manager_secret.cursor_key.id
    erp-credential         = google_secret_manager_secret.erp_credential.id
    payment-provider-token = google_secret_manager_secret.payment_provider_token.id
  }
  secret            = each.value
  fetch_secret_data = false
}
