-- Guards: the rules that hold whatever the caller does, so a wrong row can't be written.
--
--   * every INSERT into entries must balance per transaction and asset, with two or
--     more legs, and may only attach legs to a transaction created in the same
--     database transaction (so a committed transaction is sealed);
--   * every ledger transaction has entries (deferred check at commit);
--   * entries, transactions, spend charges, lot movements, lot extensions and the
--     audit log are append-only (UPDATE and DELETE refused; TRUNCATE too for the ledger itself);
--   * a wallet's identity (owner, model, kind, role, asset) never changes: events
--     render it on read.
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
CREATE FUNCTION ledger.check_entries_balance() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  bad record;
BEGIN
  SELECT transaction_id, asset_code, sum(amount) AS total, count(*) AS legs INTO bad
    FROM new_entries GROUP BY transaction_id, asset_code
    HAVING sum(amount) <> 0 OR count(*) < 2 LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION USING ERRCODE = '23514', MESSAGE = 'unbalanced_transaction',
      DETAIL = format('transaction %s asset %s: %s legs summing to %s',
                      bad.transaction_id, bad.asset_code, bad.legs, bad.total);
  END IF;
  PERFORM 1 FROM (SELECT DISTINCT transaction_id FROM new_entries) n
    JOIN ledger.transactions t ON t.id = n.transaction_id
   WHERE t.created_xact IS DISTINCT FROM pg_current_xact_id();
  IF FOUND THEN
    RAISE EXCEPTION USING ERRCODE = '23514', MESSAGE = 'sealed_transaction',
      DETAIL = 'entries can only be added by the database transaction that created their ledger transaction';
  END IF;
  -- an entry's created_xact places it in commit order for the balance checkpoints
  -- (32_balance_checkpoints.sql): it is its ledger transaction's, as the default gives
  PERFORM 1 FROM new_entries WHERE created_xact IS DISTINCT FROM pg_current_xact_id();
  IF FOUND THEN
    RAISE EXCEPTION USING ERRCODE = '23514', MESSAGE = 'entry_commit_order',
      DETAIL = 'an entry''s created_xact is the database transaction that creates it';
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER entries_must_balance AFTER INSERT ON ledger.entries
  REFERENCING NEW TABLE AS new_entries
  FOR EACH STATEMENT EXECUTE FUNCTION ledger.check_entries_balance();

CREATE FUNCTION ledger.check_transaction_has_entries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM 1 FROM ledger.entries WHERE transaction_id = NEW.id LIMIT 1;
  IF NOT FOUND THEN
    RAISE EXCEPTION USING ERRCODE = '23514', MESSAGE = 'unbalanced_transaction',
      DETAIL = format('transaction %s has no entries', NEW.id);
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
    DETAIL = format('wallet %s: owner, model, kind, role and asset never change', OLD.id);
END $$;
CREATE TRIGGER wallets_identity_fixed BEFORE UPDATE OF owner_id, model, kind, system_role, asset_code
  ON ledger.wallets FOR EACH ROW
  WHEN (OLD.owner_id IS DISTINCT FROM NEW.owner_id OR OLD.model IS DISTINCT FROM NEW.model
        OR OLD.kind IS DISTINCT FROM NEW.kind OR OLD.system_role IS DISTINCT FROM NEW.system_role
        OR OLD.asset_code IS DISTINCT FROM NEW.asset_code)
  EXECUTE FUNCTION ledger.refuse_identity_change();
