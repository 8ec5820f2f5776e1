-- References held without a row lock, and the void index without its NULLs
-- (docs/database.md#what-each-guard-costs).
--
-- A foreign key checks each new row with SELECT ... FOR KEY SHARE on the row it names.
-- Three of the ledger's named rows that every posting reaches are hot: the asset (every
-- posting of an asset names the same row) and each system account (funding, revenue:
-- half the legs of the ledger). Two postings at once holding a key-share lock on one row
-- make Postgres create a MultiXact for the pair and rewrite the row's header, so under
-- load every posting paid for a MultiXact and a WAL record on the busiest rows of the
-- database. The lock protects the reference against the parent row being deleted or
-- its key changed meanwhile; here neither can happen: transactions are append-only, and
-- an asset's code and a wallet's id and asset are fixed and never deleted
-- (db/schema/20_guards.sql refuses it). So the same references are now checked by the
-- guards without a lock: every entry's transaction and its wallet of that asset by the
-- entries' statement-level check, every transaction's asset by its deferred check at
-- commit. The reconciliation checks them too (references_exist, common/adapters/
-- reconciliation.py), the full run over the whole history.
ALTER TABLE ledger.transactions DROP CONSTRAINT transactions_asset_code_fkey;
ALTER TABLE ledger.entries DROP CONSTRAINT entries_transaction_id_fkey;
ALTER TABLE ledger.entries DROP CONSTRAINT entries_wallet_asset;
-- The outbox row's own: written only by the entries' trigger (80_outbox.sql), for the
-- transactions the guard above has just found, in the same database transaction. The
-- key-share lock on a row the posting itself has just inserted is no MultiXact, but it
-- is one more row lock, WAL record and query per posting that protects nothing.
ALTER TABLE ledger.outbox DROP CONSTRAINT outbox_transaction_id_fkey;

-- A transaction is voided at most once. The unique constraint indexed every posting's
-- NULL as well; only voids need to be in it. The new index is built before the
-- constraint goes, under the deploy's lock (one scan of transactions), so the rule never
-- lapses; never CREATE ... IF NOT EXISTS here, which would trust any index of that name,
-- an invalid one left by a failed concurrent build included.
CREATE UNIQUE INDEX transactions_void_once_partial ON ledger.transactions (voids_transaction_id)
  WHERE voids_transaction_id IS NOT NULL;
ALTER TABLE ledger.transactions DROP CONSTRAINT transactions_void_once;
ALTER INDEX ledger.transactions_void_once_partial RENAME TO transactions_void_once;
