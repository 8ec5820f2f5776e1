-- Callers and tenants: who may call the ledger, what each may do where, and an
-- append-only audit of every administrative change.
--
-- A principal is a verified token's (issuer, subject): a service account, an end user
-- of a client app or an operator. It belongs to a tenant, which scopes its idempotency
-- keys. A grant gives a principal a role (a set of scopes) within a boundary: its own
-- wallets (`own`: the wallets whose owner_id is the principal's owner_id), a tree (a
-- root wallet and everything below it) or every wallet (`all`). What the database does
-- with them (the caller lookup, the audited procedures, dual control) is in
-- db/schema/75_access.sql.

CREATE TABLE ledger.roles (
  name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{1,31}$'),
  scopes      text[] NOT NULL CHECK (scopes <@ ARRAY['topup', 'bonus', 'usage', 'transfer', 'void', 'allocate',
                                                     'wallet_admin', 'read', 'asset_admin', 'grants_admin']),
  -- per action class (money, read, admin): {"money": {"per_second": 50, "burst": 100}}
  rate_limits jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(rate_limits) = 'object'),
  description text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The roles every deployment starts with. Money comes in only from those who can vouch
-- for it: the payment service tops up (after the provider confirmed the payment), the
-- back office grants bonuses; no end user's or operator's role can mint credit.
INSERT INTO ledger.roles (name, scopes, description) VALUES
  ('customer', ARRAY['read', 'transfer'], 'an end user: reads and transfers from their own wallets'),
  ('enterprise_admin', ARRAY['read', 'transfer', 'allocate', 'wallet_admin'],
   'manages an enterprise tree: members, allocations, limits, freezing'),
  ('reseller', ARRAY['read', 'allocate', 'wallet_admin'], 'manages its customers'' wallets below its root'),
  ('payment_service', ARRAY['topup', 'read'], 'posts top-ups and add-ons once the provider confirmed payment'),
  ('metering_service', ARRAY['usage', 'read'], 'posts usage'),
  ('back_office', ARRAY['bonus', 'void', 'read', 'wallet_admin'], 'bonuses, voids and wallet support'),
  ('operator', ARRAY['read', 'void', 'allocate', 'wallet_admin', 'asset_admin', 'grants_admin'],
   'runs the ledger: wallets, assets, callers and their grants');
-- The services post for every customer at once: their limits are the ledger's
-- capacity, not one person's pace (the defaults, for everyone else: common/config.py).
UPDATE ledger.roles SET rate_limits = '{"money": {"per_second": 1000, "burst": 2000},
                                        "read": {"per_second": 1000, "burst": 2000}}'
 WHERE name IN ('payment_service', 'metering_service');
UPDATE ledger.roles SET rate_limits = '{"money": {"per_second": 200, "burst": 400},
                                        "read": {"per_second": 500, "burst": 1000},
                                        "admin": {"per_second": 50, "burst": 100}}'
 WHERE name = 'back_office';
-- operators script their administration (onboarding a tenant is dozens of calls)
UPDATE ledger.roles SET rate_limits = '{"read": {"per_second": 200, "burst": 400},
                                        "admin": {"per_second": 50, "burst": 100}}'
 WHERE name = 'operator';

CREATE TABLE ledger.principals (
  id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._:@-]{1,128}$'),
  issuer      text NOT NULL CHECK (length(issuer) BETWEEN 1 AND 255),
  subject     text NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
  kind        text NOT NULL CHECK (kind IN ('service', 'user', 'operator')),
  tenant      text NOT NULL CHECK (tenant ~ '^[A-Za-z0-9._:@-]{1,128}$'),
  -- the wallet owner an end user is: the `own` boundary's wallets
  owner_id    text CHECK (length(owner_id) BETWEEN 1 AND 128),
  status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  rate_limits jsonb CHECK (rate_limits IS NULL OR jsonb_typeof(rate_limits) = 'object'),
  description text NOT NULL DEFAULT '',
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT principals_identity UNIQUE (issuer, subject)
);

CREATE TABLE ledger.grants (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  principal_id   text NOT NULL REFERENCES ledger.principals (id),
  role           text NOT NULL REFERENCES ledger.roles (name),
  boundary       text NOT NULL CHECK (boundary IN ('own', 'tree', 'all')),
  root_wallet_id bigint REFERENCES ledger.wallets (id),
  -- pending: waits for a second operator (dual control); revoked: kept for the record
  status         text NOT NULL DEFAULT 'active' CHECK (status IN ('pending', 'active', 'revoked')),
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT grants_tree_has_root CHECK ((boundary = 'tree') = (root_wallet_id IS NOT NULL))
);
CREATE UNIQUE INDEX grants_one_live ON ledger.grants (principal_id, role, boundary, coalesce(root_wallet_id, 0))
  WHERE status <> 'revoked';

-- Every administrative change: who (the actor as the function verified it), when,
-- what it was before and after, and why. Append-only (db/schema/20_guards.sql).
CREATE TABLE ledger.audit_log (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at         timestamptz NOT NULL DEFAULT now(),
  actor      jsonb NOT NULL CHECK (actor ? 'principal'),
  action     text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
  target     text NOT NULL,
  before     jsonb,
  after      jsonb,
  reason     text CHECK (length(reason) <= 500)
);
CREATE INDEX audit_log_by_target ON ledger.audit_log (target, id);

-- Dual control: a change above a configured threshold waits here for a second operator.
CREATE TABLE ledger.pending_changes (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind         text NOT NULL CHECK (kind IN ('credit_limit', 'grant')),
  target       text NOT NULL,
  change       jsonb NOT NULL,
  reason       text CHECK (length(reason) <= 500),
  requested_by jsonb NOT NULL CHECK (requested_by ? 'principal'),
  requested_at timestamptz NOT NULL DEFAULT now(),
  status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
  decided_by   jsonb,
  decided_at   timestamptz,
  CONSTRAINT pending_changes_decided CHECK ((status = 'pending') = (decided_by IS NULL)),
  -- the second pair of eyes is another principal's
  CONSTRAINT pending_changes_second_person CHECK (decided_by->>'principal' <> requested_by->>'principal')
);

-- What needs a second operator, kept in the database so that no function can pass
-- itself a laxer rule: a customer's total credit limit (per owner and asset) above
-- dual_control_credit_limit, and a grant over every wallet or of a role holding any of
-- dual_control_scopes. One row; only the schema's owner changes it.
CREATE TABLE ledger.access_settings (
  singleton                 boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  dual_control_credit_limit bigint NOT NULL DEFAULT 100000 CHECK (dual_control_credit_limit >= 0),
  dual_control_scopes       text[] NOT NULL DEFAULT ARRAY['topup', 'bonus', 'void', 'asset_admin', 'grants_admin']
                            CHECK (dual_control_scopes <@ ARRAY['topup', 'bonus', 'usage', 'transfer', 'void',
                                   'allocate', 'wallet_admin', 'read', 'asset_admin', 'grants_admin']),
  updated_at                timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ledger.access_settings DEFAULT VALUES;

-- Postings record who made them, and idempotency keys are scoped to the caller's
-- tenant: two tenants using one key string get two independent results. Rows posted
-- before callers existed keep the empty tenant.
ALTER TABLE ledger.transactions
  ADD COLUMN tenant text NOT NULL DEFAULT '',
  ADD COLUMN actor jsonb;
ALTER TABLE ledger.transactions DROP CONSTRAINT transactions_idempotency_key_unique;
ALTER TABLE ledger.transactions ADD CONSTRAINT transactions_tenant_key_unique UNIQUE (tenant, idempotency_key);

ALTER TABLE ledger.lot_extensions
  ADD COLUMN tenant text NOT NULL DEFAULT '',
  ADD COLUMN actor jsonb;
ALTER TABLE ledger.lot_extensions DROP CONSTRAINT lot_extensions_idempotency_key_key;
ALTER TABLE ledger.lot_extensions ADD CONSTRAINT lot_extensions_tenant_key_unique UNIQUE (tenant, idempotency_key);
