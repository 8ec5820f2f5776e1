-- Guards: the rules that hold whatever the caller does, so a wrong row can't be written.
--
--   * every INSERT into entries must balance per transaction and asset, with two or
--     more legs, and may only attach legs to a transaction created in the same
--     database transaction (so a committed transaction is sealed);
--   * every entry names a transaction and a wallet of its asset that exist, and every
--     transaction an asset that exists: the references of foreign keys, checked
--     without their row lock (migration 0019), since none of those rows is ever
--     deleted or changes its key (refused below);
--   * every ledger transaction has entries (deferred check at commit);
--   * entries, transactions, spend charges, lot movements, lot extensions and the
--     audit log are append-only (UPDATE and DELETE refused; TRUNCATE too for the ledger itself);
--   * a wallet's identity (id, owner, model, kind, role, asset) never changes: events
--     render it on read; a wallet and an asset are never deleted, nor an asset's code
--     changed.
-- The constraints on the tables themselves (a customer never below -credit_limit, a
-- closed wallet empty, a parent of the same asset and model, ...) are in the migrations.

-- Append-only ------------------------------------------------------------------

CREATE FUNCTION ledger.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'append_only',
    DETAIL = format('%s rows are append-only: %s refused', TG_TABLE_NAME, TG_OP);
END $$;

CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON ledger.entries
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON ledger.entries
  FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE ON ledger.transactions
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON ledger.transactions
  FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER spend_charges_append_only BEFORE UPDATE OR DELETE ON ledger.spend_charges
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER lot_movements_append_only BEFORE UPDATE OR DELETE ON ledger.lot_movements
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER lot_extensions_append_only BEFORE UPDATE OR DELETE ON ledger.lot_extensions
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON ledger.audit_log
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON ledger.audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();

-- Double entry -----------------------------------------------------------------

-- One check per INSERT statement (not per row): every statement's legs balance per
-- transaction and asset, and only reach transactions created by the current database
-- transaction. Together these make every committed transaction balanced and sealed.
-- A ledger transaction is sealed when the database transaction that created it ends.
-- Each transaction row records the top-level transaction that created it
-- (created_xact): pg_current_xact_id() names the top-level transaction even inside a
-- subtransaction, where a row's xmin would be the subtransaction's id (group commit
-- runs each posting in one). Rows from before that column read NULL: sealed.
--
-- The same pass checks what the entries' foreign keys held until migration 0019: each
-- entry's transaction exists, and its wallet exists with the entry's asset. A foreign
-- key would lock each named row FOR KEY SHARE; a system account is named by half the
-- postings at once, and that lock made a MultiXact on it for nearly every posting. The
-- lock guards against the row going away or changing its key, which none of these
-- rows can (append-only transactions; wallet identity fixed and wallets never deleted,
-- below), so a plain read holds the same reference. One query for all of it: each
-- entry probes its transaction and its wallet by primary key once.
CREATE FUNCTION ledger.check_entries_balance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  bad record;
BEGIN
  SELECT n.transaction_id, n.asset_code, sum(n.amount) AS total, count(*) AS legs,
         bool_or(t.id IS NULL) AS no_transaction,
         min(n.wallet_id) FILTER (WHERE w.id IS NULL) AS no_wallet,
         bool_or(t.created_xact IS DISTINCT FROM pg_current_xact_id()) AS sealed,
         bool_or(n.created_xact IS DISTINCT FROM pg_current_xact_id()) AS out_of_order
    INTO bad
    FROM new_entries n
    LEFT JOIN ledger.transactions t ON t.id = n.transaction_id
    LEFT JOIN ledger.wallets w ON w.id = n.wallet_id AND w.asset_code = n.asset_code
   GROUP BY n.transaction_id, n.asset_code
  HAVING sum(n.amount) <> 0 OR count(*) < 2 OR bool_or(t.id IS NULL) OR bool_or(w.id IS NULL)
      OR bool_or(t.created_xact IS DISTINCT FROM pg_current_xact_id())
      OR bool_or(n.created_xact IS DISTINCT FROM pg_current_xact_id())
   LIMIT 1;
  IF NOT FOUND THEN
    RETURN NULL;
  ELSIF bad.no_transaction THEN
    RAISE EXCEPTION USING ERRCODE = '23503', MESSAGE = 'entry_transaction_unknown',
      DETAIL = format('entries name transaction %s, which does not exist', bad.transaction_id);
  ELSIF bad.no_wallet IS NOT NULL THEN
    RAISE EXCEPTION USING ERRCODE = '23503', MESSAGE = 'entry_wallet_unknown',
      DETAIL = format('transaction %s: no wallet %s of asset %s', bad.transaction_id, bad.no_wallet, bad.asset_code);
  ELSIF bad.total <> 0 OR bad.legs < 2 THEN
    RAISE EXCEPTION USING ERRCODE = '23514', MESSAGE = 'unbalanced_transaction',
      DETAIL = format('transaction %s asset %s: %s legs summing to %s',
                      bad.transaction_id, bad.asset_code, bad.legs, bad.total);
  ELSIF bad.sealed THEN
    RAISE EXCEPTION USING ERRCODE = '23514', MESSAGE = 'sealed_transaction',
      DETAIL = 'entries can only be added by the database transaction that created their ledger transaction';
  END IF;
  -- an entry's created_xact places it in commit order for the balance checkpoints
  -- (32_balance_checkpoints.sql): it is its ledger transaction's, as the default gives
  RAISE EXCEPTION USING ERRCODE = '23514', MESSAGE = 'entry_commit_order',
    DETAIL = 'an entry''s created_xact is the database transaction that creates it';
END $$;

CREATE TRIGGER entries_must_balance AFTER INSERT ON ledger.entries
  REFERENCING NEW TABLE AS new_entries
  FOR EACH STATEMENT EXECUTE FUNCTION ledger.check_entries_balance();

-- At commit, once per ledger transaction: it has entries, and its asset exists (the
-- reference its foreign key held until migration 0019, read without a lock: every
-- posting of an asset named the same row, so the key-share lock was a MultiXact on it
-- for nearly every posting; an asset is never deleted nor its code changed, below).
-- SECURITY DEFINER: a deferred trigger runs at COMMIT as the session's login, after
-- commit_posting() has returned, and a job's login may not read the assets (a foreign
-- key's own check ran as the table's owner).
CREATE FUNCTION ledger.check_transaction_has_entries() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
BEGIN
  PERFORM 1 FROM ledger.entries WHERE transaction_id = NEW.id LIMIT 1;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = '23514', MESSAGE = 'unbalanced_transaction',
      DETAIL = format('transaction %s has no entries', NEW.id);
  END IF;
  PERFORM 1 FROM ledger.assets WHERE code = NEW.asset_code;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = '23503', MESSAGE = 'unknown_asset',
      DETAIL = format('transaction %s: no asset %s', NEW.id, NEW.asset_code);
  END IF;
  RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER transactions_need_entries AFTER INSERT ON ledger.transactions
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION ledger.check_transaction_has_entries();

-- Identity ---------------------------------------------------------------------

-- What an event says must not change after it is written: it is rendered on read from
-- transactions and entries (append-only) and from each leg's wallet, whose identity
-- (owner, model, kind, role, asset) is therefore fixed once the wallet exists.
CREATE FUNCTION ledger.refuse_identity_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'wallet_identity_fixed',
    DETAIL = format('wallet %s: id, owner, model, kind, role and asset never change', OLD.id);
END $$;
CREATE TRIGGER wallets_identity_fixed BEFORE UPDATE OF id, owner_id, model, kind, system_role, asset_code
  ON ledger.wallets FOR EACH ROW
  WHEN (OLD.id IS DISTINCT FROM NEW.id
        OR OLD.owner_id IS DISTINCT FROM NEW.owner_id OR OLD.model IS DISTINCT FROM NEW.model
        OR OLD.kind IS DISTINCT FROM NEW.kind OR OLD.system_role IS DISTINCT FROM NEW.system_role
        OR OLD.asset_code IS DISTINCT FROM NEW.asset_code)
  EXECUTE FUNCTION ledger.refuse_identity_change();

-- Wallets and assets are kept for good (a wallet is closed, never deleted), with their
-- keys: the entries and transactions that name them rely on it (check_entries_balance
-- and check_transaction_has_entries above).
CREATE FUNCTION ledger.refuse_removal() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'kept_for_good',
    DETAIL = format('%s rows are kept for good, with their keys: %s refused', TG_TABLE_NAME, TG_OP);
END $$;
CREATE TRIGGER wallets_kept BEFORE DELETE ON ledger.wallets
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_removal();
CREATE TRIGGER wallets_no_truncate BEFORE TRUNCATE ON ledger.wallets
  FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_removal();
CREATE TRIGGER assets_kept BEFORE DELETE ON ledger.assets
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_removal();
CREATE TRIGGER assets_code_fixed BEFORE UPDATE OF code ON ledger.assets
  FOR EACH ROW WHEN (OLD.code IS DISTINCT FROM NEW.code) EXECUTE FUNCTION ledger.refuse_removal();
CREATE TRIGGER assets_no_truncate BEFORE TRUNCATE ON ledger.assets
  FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_removal();
