-- System account balances from checkpoints (docs/ledger-model.md#system-account-balances):
-- a system account keeps no cached balance (it would be a hot row every posting
-- locks); its balance is the sum of its entries up to a checkpointed horizon of
-- finished transactions, kept by ledger.advance_balance_checkpoints(), plus its
-- entries after that horizon, read through a small index.
--
-- Each entry records the database transaction that created it (created_xact, as its
-- ledger transaction does, 0005), so the entries after a horizon in commit order,
-- (created_xact, transaction_id), are one index range per account. The backfill runs
-- here, with the append-only triggers dropped (db/definitions.py); from now on the
-- column's default fills it and the entries' statement trigger refuses any other value
-- (20_guards.sql).
ALTER TABLE ledger.entries ADD COLUMN created_xact xid8;
UPDATE ledger.entries e SET created_xact = t.created_xact FROM ledger.transactions t WHERE t.id = e.transaction_id;
ALTER TABLE ledger.entries ALTER COLUMN created_xact SET DEFAULT pg_current_xact_id(),
  ALTER COLUMN created_xact SET NOT NULL;

-- Only system accounts' entries (the ones without a running balance), with the amount,
-- so a tail is read from the index alone.
CREATE INDEX entries_system_after_horizon ON ledger.entries (wallet_id, created_xact, transaction_id)
  INCLUDE (amount) WHERE balance_after IS NULL;

-- Where the checkpoints stand, one row: every ledger transaction at or below
-- (after_xact, after_id) in commit order is final and counted in the checkpoints.
CREATE TABLE ledger.balance_horizon (
  only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  after_xact  xid8 NOT NULL DEFAULT '0'::xid8,
  after_id    bigint NOT NULL DEFAULT 0,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ledger.balance_horizon (only_row) VALUES (true);

-- Per system account (and so per asset): the sum and count of its entries in the
-- transactions at or below the horizon. A system account with no row has no entries
-- there. Written only by ledger.advance_balance_checkpoints() (99_grants.sql); a
-- horizon never moves back (20_guards.sql).
CREATE TABLE ledger.balance_checkpoints (
  wallet_id     bigint PRIMARY KEY,
  asset_code    text NOT NULL,
  horizon_xact  xid8 NOT NULL,
  horizon_id    bigint NOT NULL,
  -- numeric, as sum(bigint) is: a system account's history may add up past bigint (a
  -- funding account pays out what many customers' bigint balances hold together)
  balance       numeric NOT NULL,
  entry_count   bigint NOT NULL CHECK (entry_count > 0),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (wallet_id, asset_code) REFERENCES ledger.wallets (id, asset_code)
);
