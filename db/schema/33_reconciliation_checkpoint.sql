-- Incremental reconciliation's checkpoint (docs/operations.md#reconciliation-incremental-and-full).
--
-- `python -m common.reconcile` checks, in one repeatable-read snapshot, only the ledger
-- transactions after the checkpoint in commit order (created_xact, id), and the
-- current state against the checkpoint's totals plus what came after. When it found
-- nothing it calls ledger.advance_reconciliation() in that same snapshot, which moves
-- the checkpoint to the last transaction that is final there (created_xact below
-- pg_snapshot_xmin, as the balance horizon in 32_balance_checkpoints.sql: a lower id
-- still in flight can never appear below it later) and adds that range's sums to the
-- totals. The function computes the sums itself: its caller chooses only when, never
-- what.
--
-- The checks themselves run in Python (common/adapters/incremental_reconciliation.py)
-- in the same snapshot; the function does not repeat them (a second copy of every
-- invariant in PL/pgSQL would drift from the first). So that "the same snapshot" holds,
-- it refuses a READ COMMITTED caller, whose every statement takes a newer snapshot than
-- the checks saw (and whose pg_current_snapshot() here would pass transactions no
-- check read); and every advance is written to ledger.audit_log with the login that
-- made it, the range and the count it passed. A login that calls it without checking
-- passes transactions unchecked, but on the record; the full run (--full) re-reads
-- everything whatever the checkpoint says (docs/operations.md).

CREATE FUNCTION ledger.advance_reconciliation(p_after_xact xid8, p_after_id bigint,
                                              OUT after_xact xid8, OUT after_id bigint, OUT taken bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_from reconciliation_checkpoint%ROWTYPE;
BEGIN
  IF current_setting('transaction_isolation') NOT IN ('repeatable read', 'serializable') THEN
    RAISE EXCEPTION USING ERRCODE = '25000', MESSAGE = 'reconciliation_needs_one_snapshot',
      DETAIL = format('the checkpoint moves only in the repeatable-read (or serializable) transaction whose '
                      'snapshot the checks read; this one is %s', current_setting('transaction_isolation'));
  END IF;
  -- in a repeatable-read run, a checkpoint moved by a concurrent run since this
  -- snapshot is a serialization failure here (40001, from the FOR UPDATE itself); in
  -- any case the run checked from p_after
  SELECT * INTO v_from FROM reconciliation_checkpoint FOR UPDATE;
  IF (v_from.after_xact, v_from.after_id) <> (p_after_xact, p_after_id) THEN
    RAISE EXCEPTION USING ERRCODE = '40001', MESSAGE = 'reconciliation_moved',
      DETAIL = format('the checkpoint stands at (%s, %s), not at (%s, %s) where this run checked from',
                      v_from.after_xact, v_from.after_id, p_after_xact, p_after_id);
  END IF;
  SELECT t.created_xact, t.id INTO after_xact, after_id FROM transactions t
   WHERE (t.created_xact, t.id) > (v_from.after_xact, v_from.after_id)
     AND t.created_xact < pg_snapshot_xmin(pg_current_snapshot())
   ORDER BY t.created_xact DESC, t.id DESC LIMIT 1;
  IF NOT FOUND THEN
    -- nothing new to pass: the run was clean all the same, and updated_at says when the
    -- ledger last reconciled clean (the outbox sweeper logs its age for the alert)
    UPDATE reconciliation_checkpoint SET updated_at = now();
    after_xact := v_from.after_xact;
    after_id := v_from.after_id;
    taken := 0;
    RETURN;
  END IF;
  -- the range's sums, once: per asset for customer entries, per system account
  WITH r AS (
    SELECT e.asset_code, CASE WHEN e.balance_after IS NULL THEN e.wallet_id END AS wallet_id,
           e.balance_after IS NOT NULL AS customer, sum(e.amount) AS total, count(*) AS legs
      FROM transactions t JOIN entries e ON e.transaction_id = t.id
     WHERE (t.created_xact, t.id) > (v_from.after_xact, v_from.after_id)
       AND (t.created_xact, t.id) <= (after_xact, after_id)
     GROUP BY 1, 2, 3),
  customers AS (
    INSERT INTO reconciliation_asset_totals AS c (asset_code, horizon_xact, horizon_id, customer_sum, customer_entries)
    SELECT r.asset_code, after_xact, after_id, sum(r.total), sum(r.legs) FROM r WHERE r.customer GROUP BY r.asset_code
    ON CONFLICT (asset_code) DO UPDATE
      SET customer_sum = c.customer_sum + excluded.customer_sum,
          customer_entries = c.customer_entries + excluded.customer_entries,
          horizon_xact = excluded.horizon_xact, horizon_id = excluded.horizon_id, updated_at = now()
    RETURNING 1)
  INSERT INTO reconciliation_system_totals AS c (wallet_id, asset_code, horizon_xact, horizon_id, balance, entry_count)
  SELECT r.wallet_id, r.asset_code, after_xact, after_id, r.total, r.legs FROM r WHERE NOT r.customer
  ON CONFLICT (wallet_id) DO UPDATE
    SET balance = c.balance + excluded.balance, entry_count = c.entry_count + excluded.entry_count,
        horizon_xact = excluded.horizon_xact, horizon_id = excluded.horizon_id, updated_at = now();
  UPDATE reconciliation_asset_totals c SET horizon_xact = after_xact, horizon_id = after_id, updated_at = now()
   WHERE (c.horizon_xact, c.horizon_id) <> (after_xact, after_id);
  UPDATE reconciliation_system_totals c SET horizon_xact = after_xact, horizon_id = after_id, updated_at = now()
   WHERE (c.horizon_xact, c.horizon_id) <> (after_xact, after_id);
  SELECT count(*) INTO taken FROM transactions t
   WHERE (t.created_xact, t.id) > (v_from.after_xact, v_from.after_id)
     AND (t.created_xact, t.id) <= (after_xact, after_id);
  UPDATE reconciliation_checkpoint c
     SET after_xact = advance_reconciliation.after_xact, after_id = advance_reconciliation.after_id,
         transactions = c.transactions + taken, updated_at = now();
  PERFORM audit(jsonb_build_object('principal', session_user::text), 'reconciliation.advance',
                'reconciliation_checkpoint',
                jsonb_build_object('after_xact', v_from.after_xact::text, 'after_id', v_from.after_id,
                                   'transactions', v_from.transactions),
                jsonb_build_object('after_xact', after_xact::text, 'after_id', after_id,
                                   'transactions', v_from.transactions + taken, 'taken', taken),
                NULL);
END $$;

-- The checkpoint only moves forward; a total changes only as its horizon advances,
-- and never changes whose total it is (as refuse_checkpoint_back in
-- 32_balance_checkpoints.sql); nothing is deleted. With the grants (only the function above writes these tables),
-- no function's role can rewind or edit them, and the owner only with a trigger off.
CREATE FUNCTION ledger.refuse_reconciliation_back() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_TABLE_NAME = 'reconciliation_checkpoint' THEN
    IF (NEW.after_xact, NEW.after_id) < (OLD.after_xact, OLD.after_id) OR NEW.transactions < OLD.transactions THEN
      RAISE EXCEPTION USING ERRCODE = '23514', MESSAGE = 'reconciliation_backwards',
        DETAIL = format('the reconciliation checkpoint cannot move back from (%s, %s) to (%s, %s)',
                        OLD.after_xact, OLD.after_id, NEW.after_xact, NEW.after_id);
    END IF;
  ELSIF (NEW.horizon_xact, NEW.horizon_id) < (OLD.horizon_xact, OLD.horizon_id)
        OR ((NEW.horizon_xact, NEW.horizon_id) = (OLD.horizon_xact, OLD.horizon_id)
            AND to_jsonb(NEW) - 'updated_at' IS DISTINCT FROM to_jsonb(OLD) - 'updated_at')
        -- the key: reconciliation_asset_totals has no wallet_id (both sides NULL there)
        OR (to_jsonb(NEW) -> 'wallet_id', to_jsonb(NEW) -> 'asset_code')
           IS DISTINCT FROM (to_jsonb(OLD) -> 'wallet_id', to_jsonb(OLD) -> 'asset_code') THEN
    RAISE EXCEPTION USING ERRCODE = '23514', MESSAGE = 'reconciliation_backwards',
      DETAIL = format('%s: a total changes only as its horizon advances, and stays its own account''s or asset''s',
                      TG_TABLE_NAME);
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER reconciliation_checkpoint_forward BEFORE UPDATE ON ledger.reconciliation_checkpoint
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_reconciliation_back();
CREATE TRIGGER reconciliation_asset_totals_forward BEFORE UPDATE ON ledger.reconciliation_asset_totals
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_reconciliation_back();
CREATE TRIGGER reconciliation_system_totals_forward BEFORE UPDATE ON ledger.reconciliation_system_totals
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_reconciliation_back();
CREATE TRIGGER reconciliation_checkpoint_kept BEFORE DELETE ON ledger.reconciliation_checkpoint
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER reconciliation_asset_totals_kept BEFORE DELETE ON ledger.reconciliation_asset_totals
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER reconciliation_system_totals_kept BEFORE DELETE ON ledger.reconciliation_system_totals
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER reconciliation_checkpoint_no_truncate BEFORE TRUNCATE ON ledger.reconciliation_checkpoint
  FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER reconciliation_asset_totals_no_truncate BEFORE TRUNCATE ON ledger.reconciliation_asset_totals
  FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER reconciliation_system_totals_no_truncate BEFORE TRUNCATE ON ledger.reconciliation_system_totals
  FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();
