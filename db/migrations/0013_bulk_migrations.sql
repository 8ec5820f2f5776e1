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
INSERT INTO ledger.wallets (asset_code, kind, system_role, owner_id, model)
SELECT a.code, 'system', 'migration', 'system', 'system'
  FROM ledger.assets a
 WHERE NOT EXISTS (SELECT 1 FROM ledger.wallets w
                    WHERE w.kind = 'system' AND w.asset_code = a.code AND w.system_role = 'migration');

CREATE INDEX transactions_by_migration ON ledger.transactions ((metadata ->> 'migration_id'), id)
  WHERE metadata ? 'migration_id';
CREATE INDEX wallets_by_migration ON ledger.wallets ((metadata ->> 'migration_id'), owner_id)
  WHERE metadata ? 'migration_id';
