-- Dormancy (docs/dormancy.md): a wallet nobody used for a policy's inactivity period
-- becomes `dormant`; by policy its balance is also swept to the asset's `dormant`
-- liability account (action dormant_sweep), and a reactivation voids that sweep, so
-- the customer gets back exactly what was swept and no new money is made.
-- What the database does with these tables is in db/schema/: the runner
-- (86_dormancy.sql) and the guards in commit_posting() (70_posting.sql).

ALTER TABLE ledger.transactions DROP CONSTRAINT transactions_action_check;
ALTER TABLE ledger.transactions ADD CONSTRAINT transactions_action_check CHECK (action IN (
  'topup', 'addon', 'bonus', 'usage', 'transfer', 'void', 'allocate', 'reclaim', 'expiry', 'opening_balance',
  'dormant_sweep'));

ALTER TABLE ledger.wallets DROP CONSTRAINT wallets_status_check;
ALTER TABLE ledger.wallets ADD CONSTRAINT wallets_status_check
  CHECK (status IN ('active', 'frozen', 'closed', 'dormant'));

-- The last customer-initiated posting (a top-up, add-on, usage or a transfer it sent),
-- kept by commit_posting() so the runner finds the inactive wallets without reading
-- their transactions. Existing wallets start from their last change, which is never
-- earlier than their last such posting: nobody becomes dormant early by the backfill.
ALTER TABLE ledger.wallets ADD COLUMN last_activity_at timestamptz;
UPDATE ledger.wallets SET last_activity_at = updated_at WHERE kind = 'customer';

-- Every asset, existing and new (create_asset), has a dormant account: the liability
-- for swept balances, still owed to their customers.
-- Migrations run against bare tables (db/definitions.py drops the triggers first), so
-- the tree trigger is not there to set a new wallet's root and path: set them here, a
-- system account being a tree of one.
INSERT INTO ledger.wallets (id, asset_code, kind, system_role, owner_id, model, root_id, path) OVERRIDING SYSTEM VALUE
SELECT n.id, n.code, 'system', 'dormant', 'system', 'system', n.id, ARRAY[n.id]
  FROM (SELECT a.code, nextval(pg_get_serial_sequence('ledger.wallets', 'id')) AS id
          FROM ledger.assets a
         WHERE NOT EXISTS (SELECT 1 FROM ledger.wallets w
                            WHERE w.kind = 'system' AND w.asset_code = a.code AND w.system_role = 'dormant')
         ORDER BY a.code) n;

CREATE TABLE ledger.dormancy_policies (
  asset_code   text NOT NULL REFERENCES ledger.assets (code),
  model        text NOT NULL CHECK (model IN ('personal', 'enterprise', 'reseller')),
  inactivity   interval NOT NULL CHECK (inactivity > interval '0'),
  warning      interval NOT NULL DEFAULT interval '0' CHECK (warning >= interval '0'),
  action       text NOT NULL CHECK (action IN ('mark', 'sweep')),
  reactivation text NOT NULL DEFAULT 'automatic' CHECK (reactivation IN ('automatic', 'operator')),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (asset_code, model),
  CHECK (warning < inactivity)
);

-- One row per (wallet, dormancy period): a period is named by the last activity it
-- counts from (`since`), so a run repeated finds the row and does nothing twice, and a
-- wallet used again, then idle again, starts a new period. `warned_at`: the warning
-- notice went out; `dormant_at`: the wallet became dormant, `sweep_id` the posting
-- that swept it; `reactivated_at`, `reactivation_id`: the sweep's void.
CREATE TABLE ledger.dormancy_periods (
  wallet_id       bigint NOT NULL REFERENCES ledger.wallets (id),
  since           timestamptz NOT NULL,
  warned_at       timestamptz,
  dormant_at      timestamptz,
  swept_amount    bigint CHECK (swept_amount > 0),
  sweep_id        bigint REFERENCES ledger.transactions (id),
  reactivated_at  timestamptz,
  reactivation_id bigint REFERENCES ledger.transactions (id),
  PRIMARY KEY (wallet_id, since),
  CHECK ((sweep_id IS NULL) = (swept_amount IS NULL)),
  CHECK (reactivation_id IS NULL OR sweep_id IS NOT NULL)
);
-- the period a dormant wallet is in, found by reactivation
CREATE INDEX dormancy_periods_open ON ledger.dormancy_periods (wallet_id)
  WHERE dormant_at IS NOT NULL AND reactivated_at IS NULL;
