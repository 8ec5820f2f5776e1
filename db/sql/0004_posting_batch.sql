-- Group commit: several postings in one round trip and one database transaction.
--
-- Under load, a function instance has several requests posting at once. Sending them
-- together saves a round trip, a statement and a commit per posting, which is most of
-- what a posting costs besides its own rows. Each posting keeps its own outcome: it
-- runs in its own subtransaction, so a refusal (insufficient funds, a reused key)
-- rolls back that posting alone and comes back as its error fields.
--
-- Deadlock freedom: every customer wallet the batch touches is locked first, in id
-- order, so two batches never wait on each other in a cycle through wallet rows. The
-- postings then run in the order given and re-lock nothing new. Those locks wait at
-- most a second, so one wallet held elsewhere cannot stall an instance's postings for a
-- whole statement timeout.
-- A ledger transaction is sealed when the database transaction that created it ends.
-- The seal used to compare a row's xmin with the current transaction id, which is
-- wrong inside a subtransaction (the row's xmin is then the subtransaction's id).
-- Each row now records the top-level transaction that created it:
-- pg_current_xact_id() names the top-level transaction even inside a subtransaction.
-- Rows from before this column read NULL, which counts as sealed.
ALTER TABLE ledger.transactions ADD COLUMN created_xact xid8;
ALTER TABLE ledger.transactions ALTER COLUMN created_xact SET DEFAULT pg_current_xact_id();

CREATE OR REPLACE FUNCTION ledger.check_entries_balance() RETURNS trigger LANGUAGE plpgsql AS $$
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
  RETURN NULL;
END $$;

CREATE FUNCTION ledger.commit_postings(p_batch jsonb)
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

REVOKE ALL ON FUNCTION ledger.commit_postings(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger.commit_postings(jsonb) TO ledger_app;
