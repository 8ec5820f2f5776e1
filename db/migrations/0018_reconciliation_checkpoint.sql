-- Incremental reconciliation (docs/operations.md#reconciliation-incremental-and-full)
-- and autovacuum for the append-only tables (docs/database.md#vacuum-and-freezing).
--
-- Where the last clean reconciliation stands, one row: every ledger transaction at or
-- below (after_xact, after_id) in commit order (created_xact, id) was final when it was
-- checked, and is counted in the totals below. Written only by
-- ledger.advance_reconciliation() (33_reconciliation_checkpoint.sql), forward only.
CREATE TABLE ledger.reconciliation_checkpoint (
  only_row      boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  after_xact    xid8 NOT NULL DEFAULT '0'::xid8,
  after_id      bigint NOT NULL DEFAULT 0,
  transactions  bigint NOT NULL DEFAULT 0,  -- how many transactions lie at or below it
  updated_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ledger.reconciliation_checkpoint (only_row) VALUES (true);

-- Per asset: the sum and count of the customer entries (those with a running balance)
-- in the transactions at or below the checkpoint. The current sum of the customer
-- wallets' balances and entry counts must equal these plus the entries after it.
CREATE TABLE ledger.reconciliation_asset_totals (
  asset_code        text PRIMARY KEY REFERENCES ledger.assets (code),
  horizon_xact      xid8 NOT NULL,
  horizon_id        bigint NOT NULL,
  customer_sum      numeric NOT NULL,
  customer_entries  bigint NOT NULL,
  updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Per system account: the sum and count of its entries at or below the checkpoint,
-- against which its balance checkpoint (32_balance_checkpoints.sql) is checked, and
-- with which the entries of each asset sum to zero.
CREATE TABLE ledger.reconciliation_system_totals (
  wallet_id     bigint PRIMARY KEY,
  asset_code    text NOT NULL,
  horizon_xact  xid8 NOT NULL,
  horizon_id    bigint NOT NULL,
  balance       numeric NOT NULL,
  entry_count   bigint NOT NULL,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (wallet_id, asset_code) REFERENCES ledger.wallets (id, asset_code)
);

-- A touched spend counter is checked against all of its charges: one index range.
-- A plain CREATE INDEX blocks writes to spend_charges while it builds: fine for this
-- migration (never deployed before it, the table small). A future index on a big table
-- is built CONCURRENTLY by hand first, and the migration creates it IF NOT EXISTS
-- (migrations run in the deploy's transaction: docs/database.md#how-they-are-applied).
CREATE INDEX spend_charges_by_counter ON ledger.spend_charges (wallet_id, period, period_start);

-- Autovacuum for tables that are only ever inserted into. By default an insert-only
-- table is vacuumed after inserts of 20% of its size (autovacuum_vacuum_insert_scale_factor
-- 0.2): at 50M entries, every 10M, so the visibility map lags by millions of rows
-- (index-only scans fall back to the heap) and each vacuum, and the anti-wraparound one,
-- comes in one large step. Here every table below is vacuumed after a fixed number of
-- inserts whatever its size, and freezes what it visits (freeze_min_age 0: the rows are
-- never updated, so a frozen page stays frozen and later aggressive vacuums skip it).
ALTER TABLE ledger.entries SET (autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 200000,
  autovacuum_freeze_min_age = 0);
ALTER TABLE ledger.transactions SET (autovacuum_vacuum_insert_scale_factor = 0,
  autovacuum_vacuum_insert_threshold = 100000, autovacuum_freeze_min_age = 0);
ALTER TABLE ledger.lot_movements SET (autovacuum_vacuum_insert_scale_factor = 0,
  autovacuum_vacuum_insert_threshold = 100000, autovacuum_freeze_min_age = 0);
ALTER TABLE ledger.chain_links SET (autovacuum_vacuum_insert_scale_factor = 0,
  autovacuum_vacuum_insert_threshold = 100000, autovacuum_freeze_min_age = 0);
ALTER TABLE ledger.spend_charges SET (autovacuum_vacuum_insert_scale_factor = 0,
  autovacuum_vacuum_insert_threshold = 100000, autovacuum_freeze_min_age = 0);
ALTER TABLE ledger.audit_log SET (autovacuum_vacuum_insert_scale_factor = 0,
  autovacuum_vacuum_insert_threshold = 100000, autovacuum_freeze_min_age = 0);
-- The outbox is inserted once per transaction and updated once when published: every
-- row becomes one dead version. Vacuumed after a fixed count of dead rows (default 20%
-- of the table), and after inserts like the others; its rows are not frozen early, as
-- most are still to be updated.
ALTER TABLE ledger.outbox SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000,
  autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 100000);
