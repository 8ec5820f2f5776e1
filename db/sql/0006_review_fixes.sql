-- Group commit, hardened after review.
--
-- ledger.commit_postings(): the batch's up-front wallet locks are FOR NO KEY UPDATE (what
-- a balance update needs) and wait at most a second, so one wallet held elsewhere cannot
-- stall an instance's postings for a whole statement timeout.
--
-- erp.open_stream(): a new stream starts at the horizon of finished database
-- transactions, not at the newest visible transaction, so a posting still running
-- with an older transaction id cannot commit behind the start and never be exported.

CREATE OR REPLACE FUNCTION ledger.commit_postings(p_batch jsonb)
RETURNS TABLE (
  item integer,
  replayed boolean,
  transaction_id bigint,
  created_at text,
  effective_at text,
  balances text,
  original jsonb,
  error_sqlstate text,
  error_message text,
  error_detail text,
  error_constraint text
)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
#variable_conflict use_column
DECLARE
  v_posting record;
  v_result record;
  v_wallets bigint[];
  v_lock_timeout text;
BEGIN
  -- The ids go through an array so the lock is an index lookup per wallet; a join
  -- against the JSON would be planned for 100 rows per element and scan the table.
  v_wallets := ARRAY(SELECT DISTINCT leg::bigint
                       FROM jsonb_array_elements(p_batch) AS p(posting),
                            jsonb_array_elements_text(p.posting -> 'leg_wallets') AS l(leg));
  -- NO KEY UPDATE is the lock commit_posting()'s balance update takes (FOR UPDATE would
  -- also block other postings' foreign-key checks). A batch waits at most
  -- a second for them: one wallet held elsewhere must not stall every posting of the
  -- instance behind this batch; on lock_not_available the caller posts each member
  -- alone.
  v_lock_timeout := current_setting('lock_timeout');
  PERFORM set_config('lock_timeout', '1000', true);
  PERFORM 1 FROM wallets WHERE id = ANY (v_wallets) AND kind = 'customer' ORDER BY id FOR NO KEY UPDATE;
  PERFORM set_config('lock_timeout', v_lock_timeout, true);

  FOR v_posting IN
    SELECT *
      FROM jsonb_to_recordset(p_batch) AS p(
             item integer, key text, request_hash text, action text, asset text, amount bigint,
             wallet_id bigint, counterparty_wallet_id bigint, leg_wallets bigint[], leg_amounts bigint[],
             external_ref text, usage_id text, product text, description text, voids_transaction_id bigint,
             metadata jsonb)
  LOOP
    item := v_posting.item;
    BEGIN
      SELECT * INTO STRICT v_result
        FROM commit_posting(v_posting.key, v_posting.request_hash, v_posting.action, v_posting.asset,
                            v_posting.amount, v_posting.wallet_id, v_posting.counterparty_wallet_id,
                            v_posting.leg_wallets, v_posting.leg_amounts, v_posting.external_ref,
                            v_posting.usage_id, v_posting.product, v_posting.description,
                            v_posting.voids_transaction_id, coalesce(v_posting.metadata, '{}'::jsonb));
      replayed := v_result.replayed;
      transaction_id := v_result.transaction_id;
      created_at := v_result.created_at;
      effective_at := v_result.effective_at;
      balances := array_to_string(v_result.balances, ',', '');
      original := v_result.original;
      error_sqlstate := NULL;
      error_message := NULL;
      error_detail := NULL;
      error_constraint := NULL;
    EXCEPTION WHEN OTHERS THEN
      replayed := NULL;
      transaction_id := NULL;
      created_at := NULL;
      effective_at := NULL;
      balances := NULL;
      original := NULL;
      GET STACKED DIAGNOSTICS error_sqlstate = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                              error_detail = PG_EXCEPTION_DETAIL, error_constraint = CONSTRAINT_NAME;
    END;
    RETURN NEXT;
  END LOOP;
END $$;


CREATE OR REPLACE FUNCTION erp.open_stream(p_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = erp, pg_temp AS $$
DECLARE
  -- every transaction created before the oldest one still running is final: start
  -- after all of them (xid8 has no arithmetic; numeric does it)
  v_xact xid8 := ((pg_snapshot_xmin(pg_current_snapshot())::text::numeric - 1)::text)::xid8;
BEGIN
  INSERT INTO cursors (name, start_xact, start_id, after_xact, after_id)
  VALUES (p_name, v_xact, 9223372036854775807, v_xact, 9223372036854775807)
  ON CONFLICT (name) DO NOTHING;
END $$;
