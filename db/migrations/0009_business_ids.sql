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
-- this migration's. It fails, naming them (docs/database.md says what then).
DO $$
DECLARE
  v_groups bigint;
  v_examples text;
BEGIN
  WITH duplicates AS (
    SELECT tenant, action, coalesce(external_ref, usage_id) AS business_id,
           array_agg(id ORDER BY id) AS ids
      FROM ledger.transactions
     WHERE (action IN ('topup', 'addon') AND external_ref IS NOT NULL)
        OR (action = 'usage' AND usage_id IS NOT NULL)
     GROUP BY tenant, action, coalesce(external_ref, usage_id)
    HAVING count(*) > 1
  )
  SELECT count(*),
         string_agg(format('tenant %L %s %L: transactions %s', tenant, action, business_id, ids), '; ')
           FILTER (WHERE rank <= 10)
    INTO v_groups, v_examples
    FROM (SELECT *, row_number() OVER (ORDER BY ids[1]) AS rank FROM duplicates) ranked;
  IF v_groups > 0 THEN
    RAISE EXCEPTION 'ledger.transactions holds % business id(s) posted more than once; not upgraded', v_groups
      USING DETAIL = 'the first ten: ' || v_examples,
            HINT = 'each is a payment credited twice or a usage charged twice: decide which posting stands '
                   'and void the others; the indexes below then need to leave the voided ones out, in a '
                   'migration written for this database (docs/database.md, "Business ids")';
  END IF;
END $$;

CREATE UNIQUE INDEX transactions_tenant_external_ref_unique ON ledger.transactions (tenant, action, external_ref)
  WHERE action IN ('topup', 'addon') AND external_ref IS NOT NULL;
CREATE UNIQUE INDEX transactions_tenant_usage_id_unique ON ledger.transactions (tenant, usage_id)
  WHERE action = 'usage' AND usage_id IS NOT NULL;
