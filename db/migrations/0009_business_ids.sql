-- Business ids post once per tenant, whatever the idempotency key: a payment's
-- reference (`external_ref`) once per top-up and once per add-on, a usage id once per
-- usage. Two keys were enough to credit one payment twice or charge one usage twice.
--
-- Not unique: a bonus's external_ref (its campaign, shared by every bonus of it), and a
-- void's usage_id (a void copies its original's, so a usage and its void share one).
-- ledger.commit_posting() answers a second request for a posted business id (the same
-- request: the first outcome; another: a refusal naming the first transaction); these
-- indexes are what makes a second posting impossible, whoever calls.
--
-- A database that already holds duplicates is not upgraded: each is a payment credited
-- twice or a usage charged twice, and which posting stands is a person's decision, not
-- this migration's. db/versions/0009_business_ids.py stops first, naming them
-- (docs/database.md says what then).
CREATE UNIQUE INDEX transactions_tenant_external_ref_unique ON ledger.transactions (tenant, action, external_ref)
  WHERE action IN ('topup', 'addon') AND external_ref IS NOT NULL;
CREATE UNIQUE INDEX transactions_tenant_usage_id_unique ON ledger.transactions (tenant, usage_id)
  WHERE action = 'usage' AND usage_id IS NOT NULL;
