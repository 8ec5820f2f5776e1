-- System account balances: a checkpoint below the horizon of finished transactions,
-- plus the entries after it (docs/ledger-model.md#system-account-balances).
--
-- The horizon is the ERP export's and the hash chain's (90_erp_export.sql): ledger
-- transactions in commit order (created_xact, id) whose creating database transaction
-- is older than the oldest one still running (pg_snapshot_xmin). Every transaction at
-- or below it has committed or aborted for good, so no entry can ever appear there
-- again: a sum over it, once taken, stays exact. ledger.balance_checkpoints holds
-- that sum per system account; ledger.system_balance() adds the account's entries
-- after the horizon, in the reader's one snapshot, so a read is the full sum of the
-- entries it can see, at any moment.

-- A system account's balance: its checkpoint and its entries after the horizon, as
-- numeric (the full sum over its history may pass bigint, as sum(bigint) allows). The
-- checkpoint, the horizon and the entries are read in one statement, in the caller's
-- snapshot (a STABLE function takes none of its own). The horizon comes in as a value
-- (an InitPlan, not a join), so the row comparison bounds one range of
-- entries_system_after_horizon.
CREATE FUNCTION ledger.system_balance(p_wallet_id bigint) RETURNS numeric
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
  SELECT (coalesce((SELECT c.balance FROM balance_checkpoints c WHERE c.wallet_id = p_wallet_id), 0)
          + coalesce((SELECT sum(e.amount) FROM entries e
                       WHERE e.wallet_id = p_wallet_id AND e.balance_after IS NULL
                         AND (e.created_xact, e.transaction_id)
                             > (SELECT after_xact, after_id FROM balance_horizon)), 0))
$$;

-- One bounded, idempotent step: take the next (at most p_max_rows) finished
-- transactions after the horizon in commit order, add their system entries to the
-- checkpoints, move every checkpoint and the horizon to the last of them. Returns how
-- many transactions it took: 0 when caught up (with the horizon, which an old open
-- transaction holds back). Concurrent steps queue on the horizon row; the second then
-- starts where the first ended.
CREATE FUNCTION ledger.advance_balance_checkpoints(p_max_rows integer) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_from balance_horizon%ROWTYPE;
  v_to_xact xid8;
  v_to_id bigint;
  v_taken integer;
BEGIN
  IF p_max_rows IS NULL OR p_max_rows < 1 THEN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'invalid_limit', DETAIL = 'p_max_rows must be at least 1';
  END IF;
  SELECT * INTO v_from FROM balance_horizon FOR UPDATE;
  -- the page: the next finished transactions in commit order; every one at or below
  -- its last is final, so the later statements see exactly the same set
  WITH page AS (
    SELECT t.created_xact, t.id FROM transactions t
     WHERE (t.created_xact, t.id) > (v_from.after_xact, v_from.after_id)
       AND t.created_xact < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY t.created_xact, t.id
     LIMIT p_max_rows)
  SELECT (SELECT count(*) FROM page), l.created_xact, l.id INTO v_taken, v_to_xact, v_to_id
    FROM (SELECT * FROM page ORDER BY created_xact DESC, id DESC LIMIT 1) l;
  IF NOT FOUND THEN
    RETURN 0;
  END IF;
  INSERT INTO balance_checkpoints AS c (wallet_id, asset_code, horizon_xact, horizon_id, balance, entry_count)
  SELECT e.wallet_id, e.asset_code, v_to_xact, v_to_id, sum(e.amount), count(*)
    FROM transactions t JOIN entries e ON e.transaction_id = t.id AND e.balance_after IS NULL
   WHERE (t.created_xact, t.id) > (v_from.after_xact, v_from.after_id)
     AND (t.created_xact, t.id) <= (v_to_xact, v_to_id)
   GROUP BY e.wallet_id, e.asset_code
  ON CONFLICT (wallet_id) DO UPDATE
    SET balance = c.balance + excluded.balance, entry_count = c.entry_count + excluded.entry_count,
        horizon_xact = excluded.horizon_xact, horizon_id = excluded.horizon_id, updated_at = now();
  UPDATE balance_checkpoints SET horizon_xact = v_to_xact, horizon_id = v_to_id, updated_at = now()
   WHERE (horizon_xact, horizon_id) <> (v_to_xact, v_to_id);
  UPDATE balance_horizon SET after_xact = v_to_xact, after_id = v_to_id, updated_at = now();
  RETURN v_taken;
END $$;

-- A horizon only moves forward, and a checkpoint's sum only with it; nothing is
-- deleted. Together with the grants (only the owner writes these tables, through the
-- function above) a checkpoint can't be rewound or edited by any function's role.
CREATE FUNCTION ledger.refuse_horizon_back() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (NEW.after_xact, NEW.after_id) < (OLD.after_xact, OLD.after_id) THEN
    RAISE EXCEPTION USING ERRCODE = '23514', MESSAGE = 'horizon_backwards',
      DETAIL = format('the balance horizon cannot move back from (%s, %s) to (%s, %s)',
                      OLD.after_xact, OLD.after_id, NEW.after_xact, NEW.after_id);
  END IF;
  RETURN NEW;
END $$;

CREATE FUNCTION ledger.refuse_checkpoint_back() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (NEW.horizon_xact, NEW.horizon_id) < (OLD.horizon_xact, OLD.horizon_id)
     OR ((NEW.horizon_xact, NEW.horizon_id) = (OLD.horizon_xact, OLD.horizon_id)
         AND (NEW.balance, NEW.entry_count) IS DISTINCT FROM (OLD.balance, OLD.entry_count))
     OR NEW.wallet_id <> OLD.wallet_id OR NEW.asset_code <> OLD.asset_code THEN
    RAISE EXCEPTION USING ERRCODE = '23514', MESSAGE = 'checkpoint_backwards',
      DETAIL = format('checkpoint of wallet %s: only advancing its horizon may change it', OLD.wallet_id);
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER balance_horizon_forward BEFORE UPDATE ON ledger.balance_horizon
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_horizon_back();
CREATE TRIGGER balance_checkpoints_forward BEFORE UPDATE ON ledger.balance_checkpoints
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_checkpoint_back();
CREATE TRIGGER balance_horizon_kept BEFORE DELETE ON ledger.balance_horizon
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER balance_checkpoints_kept BEFORE DELETE ON ledger.balance_checkpoints
  FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER balance_horizon_no_truncate BEFORE TRUNCATE ON ledger.balance_horizon
  FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();
CREATE TRIGGER balance_checkpoints_no_truncate BEFORE TRUNCATE ON ledger.balance_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change();
