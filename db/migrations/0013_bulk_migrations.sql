-- Bulk balance migrations (docs/migrations.md): balances brought in from a legacy
-- ledger post as `opening_balance` from a `migration` equity system account of the
-- asset; moves between wallets already here post as plain transfers (which carry lots
-- with their expiry). Each posting of a migration names it in its metadata
-- ({"migration_id", "migration_row"}) and posts under the key
-- `migration:<migration id>:<row id>`, so a row posts once however often it is run;
-- the indexes below let a rollback and a report find a migration's postings and the
-- wallets it created without scanning the ledger.

ALTER TABLE ledger.transactions DROP CONSTRAINT transactions_action_check;
ALTER TABLE ledger.transactions ADD CONSTRAINT transactions_action_check CHECK (action IN (
  'topup', 'addon', 'bonus', 'usage', 'transfer', 'void', 'allocate', 'reclaim', 'expiry', 'opening_balance'));

-- The migration equity account of every existing asset (ledger.create_asset() makes it
-- for new ones).
-- Migrations run against bare tables (db/definitions.py drops the triggers first), so
-- the tree trigger is not there to set a new wallet's root and path: set them here, a
-- system account being a tree of one.
INSERT INTO ledger.wallets (id, asset_code, kind, system_role, owner_id, model, root_id, path) OVERRIDING SYSTEM VALUE
SELECT n.id, n.code, 'system', 'migration', 'system', 'system', n.id, ARRAY[n.id]
  FROM (SELECT a.code, nextval(pg_get_serial_sequence('ledger.wallets', 'id')) AS id
          FROM ledger.assets a
         WHERE NOT EXISTS (SELECT 1 FROM ledger.wallets w
                            WHERE w.kind = 'system' AND w.asset_code = a.code AND w.system_role = 'migration')
         ORDER BY a.code) n;

CREATE INDEX transactions_by_migration ON ledger.transactions ((metadata ->> 'migration_id'), id)
  WHERE metadata ? 'migration_id';
CREATE INDEX wallets_by_migration ON ledger.wallets ((metadata ->> 'migration_id'), owner_id)
  WHERE metadata ? 'migration_id';
