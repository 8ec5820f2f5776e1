-- Automatic actions' firings (docs/automation.md): one row each time a rule decided to
-- act, unique per (rule, trigger), so a redelivered event or a repeated tick finds the
-- firing it made and does nothing twice. trigger is 'event:<transaction id>' for a
-- threshold rule, 'period:<period start>' for a recurring allocation. A firing is
-- started, then finished; an auto top-up's goes started -> charged -> finished, or to
-- declined (the provider refused: never retried) or failed (the top-up was refused).
-- Rows change only through ledger.automation_fire and ledger.automation_record
-- (db/schema/78_automation.sql).

CREATE TABLE ledger.automation_firings (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  rule_id        bigint NOT NULL REFERENCES ledger.automation_rules (id),
  trigger        text NOT NULL CHECK (trigger ~ '^(event|period):.{1,64}$'),
  kind           text NOT NULL CHECK (kind IN ('auto_topup', 'low_balance', 'recurring_allocation')),
  wallet_id      bigint NOT NULL REFERENCES ledger.wallets (id),
  status         text NOT NULL DEFAULT 'started'
                 CHECK (status IN ('started', 'charged', 'finished', 'declined', 'failed')),
  charge_id      text CHECK (length(charge_id) BETWEEN 1 AND 200),  -- the provider's, once charged
  transaction_id bigint REFERENCES ledger.transactions (id),  -- the auto top-up's posting
  detail         jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(detail) = 'object'),
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT automation_firings_once UNIQUE (rule_id, trigger)
);
-- At most one auto top-up per wallet in flight (charging, or charged and not yet posted):
-- a second rule on the wallet, or the same rule re-armed by the first top-up's own
-- credit, waits until the first is done.
CREATE UNIQUE INDEX automation_firings_one_topup_in_flight ON ledger.automation_firings (wallet_id)
  WHERE kind = 'auto_topup' AND status IN ('started', 'charged');
CREATE INDEX automation_firings_in_flight ON ledger.automation_firings (created_at)
  WHERE status IN ('started', 'charged');
