-- Automatic actions' rules (docs/automation.md): what a tenant asked the ledger to do by
-- itself. An auto top-up charges a stored funding reference and tops the wallet up when
-- its available balance falls below a threshold; a low-balance rule sends a notice when
-- it does; a recurring allocation moves an amount from a pool (wallet_id) to its members
-- every period. Rules change only through the audited procedures (db/schema/), which
-- keep the tenant boundary the callers' grants draw; the automation function reads them.

CREATE TABLE ledger.automation_rules (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant      text NOT NULL CHECK (tenant ~ '^[A-Za-z0-9._:@-]{1,128}$'),
  kind        text NOT NULL CHECK (kind IN ('auto_topup', 'low_balance', 'recurring_allocation')),
  -- the wallet watched (auto_topup, low_balance) or the pool allocated from
  wallet_id   bigint NOT NULL REFERENCES ledger.wallets (id),
  threshold   bigint CHECK (threshold >= 0),   -- fires when the available balance falls below it
  amount      bigint CHECK (amount > 0),       -- charged and topped up; or allocated to each member
  funding_ref text CHECK (length(funding_ref) BETWEEN 1 AND 200),  -- the payment method at the provider
  period      text CHECK (period IN ('hour', 'day', 'week', 'month')),
  member_ids  bigint[] CHECK (cardinality(member_ids) BETWEEN 1 AND 1000),  -- NULL: every child of the pool
  status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'deleted')),
  -- a threshold rule fires once per crossing: disarmed when it fires, armed again once
  -- the balance is back at or above the threshold
  armed       boolean NOT NULL DEFAULT true,
  metadata    jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
  created_by  jsonb NOT NULL CHECK (created_by ? 'principal'),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT automation_rule_shape CHECK (
    (kind = 'auto_topup' AND threshold IS NOT NULL AND amount IS NOT NULL AND funding_ref IS NOT NULL
       AND period IS NULL AND member_ids IS NULL)
    OR (kind = 'low_balance' AND threshold IS NOT NULL AND amount IS NULL AND funding_ref IS NULL
       AND period IS NULL AND member_ids IS NULL)
    OR (kind = 'recurring_allocation' AND amount IS NOT NULL AND period IS NOT NULL
       AND threshold IS NULL AND funding_ref IS NULL)
  )
);
CREATE INDEX automation_rules_active_by_wallet ON ledger.automation_rules (wallet_id) WHERE status = 'active';
CREATE INDEX automation_rules_by_tenant ON ledger.automation_rules (tenant, id);
