-- Moves between wallets already in the ledger (docs/migrations.md, `move PLAN`): the
-- action `migration_transfer` moves an amount from one customer wallet to another of
-- the same asset, its lots with their expiry, like a transfer; unlike one it may cross
-- trees and wallet models (a plain transfer is refused outside a tree). Only the
-- migration command posts it: commit_posting() (70_posting.sql) takes it under a
-- `migration:` key only, and the edges refuse those keys to every caller.

ALTER TABLE ledger.transactions DROP CONSTRAINT transactions_action_check;
ALTER TABLE ledger.transactions ADD CONSTRAINT transactions_action_check CHECK (action IN (
  'topup', 'addon', 'bonus', 'usage', 'transfer', 'void', 'allocate', 'reclaim', 'expiry', 'opening_balance',
  'dormant_sweep', 'dormant_breakage', 'migration_transfer'));

-- With LEDGER_ERP_EXCLUDE_MIGRATIONS, a batch of only migrations' postings has no lines
-- (docs/events-and-erp.md, "Migrations"): it is recorded, so the cursor moves past
-- them, and marked delivered without a call to the ERP.
ALTER TABLE erp.batches DROP CONSTRAINT batches_line_count_check;
ALTER TABLE erp.batches ADD CONSTRAINT batches_line_count_check CHECK (line_count >= 0);
