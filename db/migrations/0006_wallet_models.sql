-- Wallet models: enterprise and reseller trees, spend limits, credit lots with expiry.
--
-- The tables and their constraints; what the database does with them is in db/schema/:
-- trees (40_trees.sql), spend limits (50_spend_limits.sql), lots (60_lots.sql), the
-- posting rules (70_posting.sql) and the expiry job (85_jobs.sql).

-- New actions ---------------------------------------------------------------------

ALTER TABLE ledger.transactions DROP CONSTRAINT transactions_action_check;
ALTER TABLE ledger.transactions ADD CONSTRAINT transactions_action_check CHECK (action IN (
  'topup', 'addon', 'bonus', 'usage', 'transfer', 'void', 'allocate', 'reclaim', 'expiry'));

-- System accounts: breakage (expired credit) and discount (a reseller's wholesale
-- discount) for every asset, existing and new.
INSERT INTO ledger.wallets (asset_code, kind, system_role, owner_id, model)
SELECT a.code, 'system', r.role, 'system', 'system'
  FROM ledger.assets a CROSS JOIN unnest(ARRAY['breakage', 'discount']) AS r(role)
 WHERE NOT EXISTS (SELECT 1 FROM ledger.wallets w
                    WHERE w.kind = 'system' AND w.asset_code = a.code AND w.system_role = r.role);

-- Trees -------------------------------------------------------------------------

ALTER TABLE ledger.wallets
  ADD COLUMN parent_id   bigint,
  ADD COLUMN root_id     bigint,
  ADD COLUMN path        bigint[],
  ADD COLUMN spend_mode  text CHECK (spend_mode IN ('allocated', 'shared_pool')),
  ADD COLUMN lot_balance bigint NOT NULL DEFAULT 0 CHECK (lot_balance >= 0);
UPDATE ledger.wallets SET root_id = id, path = ARRAY[id],
       spend_mode = CASE WHEN model IN ('enterprise', 'reseller') THEN 'allocated' END;
ALTER TABLE ledger.wallets ALTER COLUMN root_id SET NOT NULL, ALTER COLUMN path SET NOT NULL;

ALTER TABLE ledger.wallets
  ADD CONSTRAINT wallets_id_asset_model UNIQUE (id, asset_code, model),
  -- a parent has the child's asset and model
  ADD CONSTRAINT wallets_parent FOREIGN KEY (parent_id, asset_code, model)
    REFERENCES ledger.wallets (id, asset_code, model),
  ADD CONSTRAINT wallets_tree_models CHECK (parent_id IS NULL OR model IN ('enterprise', 'reseller')),
  ADD CONSTRAINT wallets_tree_depth CHECK (cardinality(path) BETWEEN 1 AND 8),
  ADD CONSTRAINT wallets_spend_mode_on_roots
    CHECK ((spend_mode IS NOT NULL) = (parent_id IS NULL AND model IN ('enterprise', 'reseller'))),
  -- a member spends what it was given: only a root can run on credit
  ADD CONSTRAINT wallets_members_no_credit CHECK (parent_id IS NULL OR credit_limit = 0),
  ADD CONSTRAINT wallets_system_no_lots CHECK (kind = 'customer' OR lot_balance = 0);
ALTER TABLE ledger.wallets DROP CONSTRAINT wallets_closed_is_empty;
ALTER TABLE ledger.wallets ADD CONSTRAINT wallets_closed_is_empty
  CHECK (status <> 'closed' OR (balance = 0 AND lot_balance = 0));
-- The limit now binds the non-expiring part of the balance (lot_balance >= 0, so the
-- balance itself stays above -credit_limit too).
ALTER TABLE ledger.wallets DROP CONSTRAINT wallets_balance_within_limit;
ALTER TABLE ledger.wallets ADD CONSTRAINT wallets_balance_within_limit
  CHECK (kind = 'system' OR balance - lot_balance >= -credit_limit);
CREATE INDEX wallets_children ON ledger.wallets (parent_id, id) WHERE parent_id IS NOT NULL;
-- A node's whole subtree is every member whose path holds it: one index lookup for a
-- roll-up at any depth (a recursive walk scanned the table once per level). Only tree
-- members are indexed, and a path never changes, so balance updates stay HOT.
CREATE INDEX wallets_subtree ON ledger.wallets USING gin (path) WHERE parent_id IS NOT NULL;
-- Every posting updates its wallets' rows: room on each page keeps those updates HOT
-- (no new index entries), which matters more now that trees add indexes and columns.
ALTER TABLE ledger.wallets SET (fillfactor = 80);

-- Spend limits ------------------------------------------------------------------

CREATE TABLE ledger.spend_limits (
  wallet_id  bigint NOT NULL REFERENCES ledger.wallets (id),
  period     text NOT NULL CHECK (period IN ('day', 'week', 'month')),
  amount     bigint NOT NULL CHECK (amount > 0),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (wallet_id, period)
);

CREATE TABLE ledger.spend_counters (
  wallet_id    bigint NOT NULL REFERENCES ledger.wallets (id),
  period       text NOT NULL,
  period_start timestamptz NOT NULL,
  spent        bigint NOT NULL CHECK (spent >= 0),
  PRIMARY KEY (wallet_id, period, period_start)
);

-- What each usage charged and each void gave back (negative): the audit trail that
-- makes every counter provable.
CREATE TABLE ledger.spend_charges (
  transaction_id bigint NOT NULL REFERENCES ledger.transactions (id),
  wallet_id      bigint NOT NULL,
  period         text NOT NULL,
  period_start   timestamptz NOT NULL,
  amount         bigint NOT NULL CHECK (amount <> 0),
  PRIMARY KEY (transaction_id, wallet_id, period),
  FOREIGN KEY (wallet_id, period, period_start) REFERENCES ledger.spend_counters (wallet_id, period, period_start)
);

-- Lots ----------------------------------------------------------------------------

CREATE TABLE ledger.lots (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  wallet_id      bigint NOT NULL REFERENCES ledger.wallets (id),
  transaction_id bigint NOT NULL REFERENCES ledger.transactions (id),  -- the credit that created it
  source_lot_id  bigint REFERENCES ledger.lots (id),                   -- the lot it was carried from
  amount         bigint NOT NULL CHECK (amount > 0),
  remaining      bigint NOT NULL,
  expires_at     timestamptz NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT lots_remaining_within_amount CHECK (remaining BETWEEN 0 AND amount)
);
CREATE INDEX lots_spendable ON ledger.lots (wallet_id, expires_at, id) WHERE remaining > 0;
CREATE INDEX lots_due ON ledger.lots (expires_at, id) WHERE remaining > 0;
CREATE INDEX lots_by_wallet ON ledger.lots (wallet_id, id);

CREATE TABLE ledger.lot_movements (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  lot_id         bigint NOT NULL REFERENCES ledger.lots (id),
  transaction_id bigint NOT NULL REFERENCES ledger.transactions (id),
  amount         bigint NOT NULL CHECK (amount <> 0),
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lot_movements_by_lot ON ledger.lot_movements (lot_id, id);
CREATE INDEX lot_movements_by_transaction ON ledger.lot_movements (transaction_id);

-- Each extension of a lot's expiry, once per idempotency key.
CREATE TABLE ledger.lot_extensions (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  idempotency_key text NOT NULL UNIQUE CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  lot_id          bigint NOT NULL REFERENCES ledger.lots (id),
  old_expires_at  timestamptz NOT NULL,
  new_expires_at  timestamptz NOT NULL,
  reason          text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT lot_extensions_later CHECK (new_expires_at > old_expires_at)
);
