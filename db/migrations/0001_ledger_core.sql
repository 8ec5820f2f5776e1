-- Ledger core: assets, wallets, transactions and their entries.
--
-- The tables' own constraints guard what a single row may hold: a customer wallet's
-- cached balance never goes below -credit_limit, a system account keeps no cached
-- balance, an entry's asset is its wallet's (a composite foreign key), a transaction is
-- voided at most once. The rules across rows (legs balance, entries and transactions
-- are append-only, a committed transaction is sealed) are triggers in
-- db/schema/20_guards.sql; money moves only through ledger.commit_posting()
-- (db/schema/70_posting.sql).
-- System accounts (funding, revenue, promotion) keep no cached balance and take no
-- row lock: their balance is derived from their entries, so the treasury that every
-- top-up touches never serializes traffic.

CREATE SCHEMA IF NOT EXISTS ledger;

CREATE TABLE ledger.assets (
  code        text PRIMARY KEY CHECK (code ~ '^[A-Z][A-Z0-9_]{1,15}$'),
  scale       smallint NOT NULL CHECK (scale BETWEEN 0 AND 18),
  description text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger.wallets (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  asset_code   text NOT NULL REFERENCES ledger.assets (code),
  kind         text NOT NULL DEFAULT 'customer' CHECK (kind IN ('customer', 'system')),
  system_role  text CHECK (system_role ~ '^[a-z][a-z_]{1,31}$'),
  owner_id     text NOT NULL CHECK (length(owner_id) BETWEEN 1 AND 128),
  model        text NOT NULL DEFAULT 'personal'
               CHECK (model IN ('personal', 'enterprise', 'reseller', 'system')),
  status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen', 'closed')),
  balance      bigint NOT NULL DEFAULT 0,
  credit_limit bigint NOT NULL DEFAULT 0 CHECK (credit_limit >= 0),
  entry_count  bigint NOT NULL DEFAULT 0,
  metadata     jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT wallets_id_asset UNIQUE (id, asset_code),
  CONSTRAINT wallets_balance_within_limit CHECK (kind = 'system' OR balance >= -credit_limit),
  CONSTRAINT wallets_system_role_iff_system CHECK ((kind = 'system') = (system_role IS NOT NULL)),
  CONSTRAINT wallets_system_model CHECK ((kind = 'system') = (model = 'system')),
  CONSTRAINT wallets_system_balance_not_cached CHECK (kind = 'customer' OR (balance = 0 AND entry_count = 0)),
  CONSTRAINT wallets_closed_is_empty CHECK (status <> 'closed' OR balance = 0)
);
CREATE UNIQUE INDEX wallets_one_system_role_per_asset ON ledger.wallets (asset_code, system_role)
  WHERE kind = 'system';
CREATE INDEX wallets_by_owner ON ledger.wallets (owner_id, id);

CREATE TABLE ledger.transactions (
  id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  idempotency_key        text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
  request_hash           text NOT NULL,
  action                 text NOT NULL CHECK (action IN ('topup', 'bonus', 'usage', 'transfer', 'void')),
  asset_code             text NOT NULL REFERENCES ledger.assets (code),
  amount                 bigint NOT NULL CHECK (amount > 0),
  wallet_id              bigint NOT NULL,
  counterparty_wallet_id bigint,
  external_ref           text,
  usage_id               text,
  product                text,
  description            text,
  voids_transaction_id   bigint REFERENCES ledger.transactions (id),
  metadata               jsonb NOT NULL DEFAULT '{}'::jsonb,
  effective_at           timestamptz NOT NULL DEFAULT now(),
  created_at             timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT transactions_idempotency_key_unique UNIQUE (idempotency_key),
  -- a transaction is voided at most once, whatever idempotency key the void carries
  CONSTRAINT transactions_void_once UNIQUE (voids_transaction_id),
  CONSTRAINT transactions_void_names_original CHECK ((action = 'void') = (voids_transaction_id IS NOT NULL))
);
CREATE INDEX transactions_by_usage ON ledger.transactions (usage_id) WHERE usage_id IS NOT NULL;

CREATE TABLE ledger.entries (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  transaction_id bigint NOT NULL REFERENCES ledger.transactions (id),
  wallet_id      bigint NOT NULL,
  asset_code     text NOT NULL,
  amount         bigint NOT NULL CHECK (amount <> 0),
  -- running balance of a customer wallet after this entry; NULL for system accounts,
  -- whose balance is derived from their entries rather than cached under a lock
  balance_after  bigint,
  created_at     timestamptz NOT NULL DEFAULT now(),
  -- the composite key makes an entry's asset always the wallet's asset
  CONSTRAINT entries_wallet_asset FOREIGN KEY (wallet_id, asset_code)
    REFERENCES ledger.wallets (id, asset_code)
);
CREATE INDEX entries_wallet_history ON ledger.entries (wallet_id, id);
CREATE INDEX entries_by_transaction ON ledger.entries (transaction_id);
