-- Dormancy (docs/dormancy.md): the runner and reactivation. Policies, periods and the
-- wallets' last_activity_at are in migration 0014; commit_posting() (70_posting.sql)
-- keeps last_activity_at, refuses a dormant wallet (wallet_dormant) and reactivates
-- one on a top-up when its policy says so.

-- The idempotency key of a period's sweep: one sweep per (wallet, period), whatever
-- the number of runs.
CREATE FUNCTION ledger.dormancy_sweep_key(p_wallet_id bigint, p_since timestamptz)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT format('dormant-sweep:%s:%s', p_wallet_id, to_char(p_since AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS.US'))
$$;

-- Brings a dormant wallet back: it becomes active, and every posting of its period's
-- sweep or breakage (one per traced group) is voided, which returns exactly what was
-- taken (its lots with their expiry) out of the dormant or breakage account: never new
-- money; a breakage's revenue is reversed. Reactivation counts as the customer's
-- activity, so the next period starts now. A wallet that is not dormant is left as it
-- is (NULL); one closed at dormancy (policy `delete`) never comes back (wallet_closed).
-- Returns the first void's transaction id.
CREATE FUNCTION ledger.dormancy_reactivate(p_wallet_id bigint, p_actor jsonb DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_wallet record;
  v_period record;
  v_posting record;
  v_void bigint;
  v_first_void bigint;
BEGIN
  SELECT id, status, asset_code INTO v_wallet FROM wallets WHERE id = p_wallet_id AND kind = 'customer'
     FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    PERFORM refuse('wallet_not_found', jsonb_build_object('wallet_id', p_wallet_id));
  END IF;
  IF v_wallet.status = 'closed' THEN
    PERFORM refuse('wallet_closed', jsonb_build_object('wallet_id', p_wallet_id));
  END IF;
  IF v_wallet.status <> 'dormant' THEN
    RETURN NULL;
  END IF;
  UPDATE wallets SET status = 'active', last_activity_at = now(), updated_at = now() WHERE id = p_wallet_id;
  SELECT since INTO v_period FROM dormancy_periods
   WHERE wallet_id = p_wallet_id AND dormant_at IS NOT NULL AND reactivated_at IS NULL;
  FOR v_posting IN
    SELECT t.id, t.amount, t.product, t.usage_id, e.wallet_id AS account
      FROM dormancy_postings p JOIN transactions t ON t.id = p.transaction_id
      JOIN entries e ON e.transaction_id = t.id AND e.wallet_id <> p_wallet_id
     WHERE p.wallet_id = p_wallet_id AND p.since = v_period.since AND p.void_id IS NULL
     ORDER BY t.id
  LOOP
    SELECT c.transaction_id INTO STRICT v_void
      FROM commit_posting(format('dormant-reactivation:%s', v_posting.id), 'dormant-reactivation', 'void',
                          v_wallet.asset_code, v_posting.amount, p_wallet_id, NULL,
                          ARRAY[p_wallet_id, v_posting.account], ARRAY[v_posting.amount, -v_posting.amount],
                          p_usage_id => v_posting.usage_id, p_product => v_posting.product,
                          p_description => 'dormant wallet reactivated', p_voids_transaction_id => v_posting.id,
                          p_actor => coalesce(p_actor, jsonb_build_object('principal', 'ledger:dormancy', 'role', 'job'))) c;
    UPDATE dormancy_postings SET void_id = v_void WHERE transaction_id = v_posting.id;
    v_first_void := coalesce(v_first_void, v_void);
  END LOOP;
  UPDATE dormancy_periods SET reactivated_at = now(), reactivation_id = v_first_void
   WHERE wallet_id = p_wallet_id AND since = v_period.since;
  RETURN v_first_void;
END $$;

-- Takes a dormant wallet's spendable balance, one posting per traced group: the
-- wallet's live lots trace back to the credit that made them (lots.transaction_id), and
-- credit bought for a product (an add-on's plan) or a usage id is booked against it;
-- one more posting takes the untraced rest (credit without expiry, lots of credit that
-- named neither). Each posting carries its group's product and usage id, so its event
-- and ERP lines do, and names its lots (metadata.lots) so it takes exactly those. Keys
-- per group: the period's key and the group's ordinal (0: the rest), the same on a
-- repeated run because the wallet is locked and nothing else changed it. Returns the
-- postings as [{transaction_id, product, usage_id, amount}].
CREATE FUNCTION ledger.dormancy_take(p_wallet_id bigint, p_since timestamptz, p_asset text, p_action text,
                                     p_spendable bigint)
RETURNS jsonb LANGUAGE plpgsql SET search_path = ledger, pg_temp AS $$
DECLARE
  v_account bigint;
  v_group record;
  v_rest bigint := p_spendable;
  v_amount bigint;
  v_ordinal int := 0;
  v_tx bigint;
  v_postings jsonb := '[]'::jsonb;
BEGIN
  SELECT w.id INTO STRICT v_account FROM wallets w
   WHERE w.kind = 'system' AND w.asset_code = p_asset
     AND w.system_role = CASE p_action WHEN 'dormant_sweep' THEN 'dormant' ELSE 'breakage' END;
  FOR v_group IN
    SELECT t.product, t.usage_id, sum(l.remaining) AS amount, array_agg(l.id ORDER BY l.id) AS lots
      FROM lots l JOIN transactions t ON t.id = l.transaction_id
     WHERE l.wallet_id = p_wallet_id AND l.remaining > 0 AND l.expires_at > now()
       AND (t.product IS NOT NULL OR t.usage_id IS NOT NULL)
     GROUP BY t.product, t.usage_id ORDER BY t.product NULLS FIRST, t.usage_id NULLS FIRST
  LOOP
    v_ordinal := v_ordinal + 1;
    v_amount := least(v_group.amount, v_rest);
    CONTINUE WHEN v_amount <= 0;
    SELECT c.transaction_id INTO STRICT v_tx
      FROM commit_posting(dormancy_sweep_key(p_wallet_id, p_since) || ':' || v_ordinal, 'dormant-sweep', p_action,
                          p_asset, v_amount, p_wallet_id, NULL, ARRAY[p_wallet_id, v_account], ARRAY[-v_amount, v_amount],
                          p_usage_id => v_group.usage_id, p_product => v_group.product,
                          p_description => 'dormant wallet swept', p_metadata => jsonb_build_object('lots', v_group.lots),
                          p_actor => jsonb_build_object('principal', 'ledger:dormancy', 'role', 'job')) c;
    INSERT INTO dormancy_postings (transaction_id, wallet_id, since) VALUES (v_tx, p_wallet_id, p_since);
    v_postings := v_postings || jsonb_build_object('transaction_id', v_tx, 'product', v_group.product,
                                                   'usage_id', v_group.usage_id, 'amount', v_amount);
    v_rest := v_rest - v_amount;
  END LOOP;
  IF v_rest > 0 THEN
    SELECT c.transaction_id INTO STRICT v_tx
      FROM commit_posting(dormancy_sweep_key(p_wallet_id, p_since) || ':0', 'dormant-sweep', p_action,
                          p_asset, v_rest, p_wallet_id, NULL, ARRAY[p_wallet_id, v_account], ARRAY[-v_rest, v_rest],
                          p_description => 'dormant wallet swept',
                          p_actor => jsonb_build_object('principal', 'ledger:dormancy', 'role', 'job')) c;
    INSERT INTO dormancy_postings (transaction_id, wallet_id, since) VALUES (v_tx, p_wallet_id, p_since);
    v_postings := v_postings || jsonb_build_object('transaction_id', v_tx, 'product', NULL, 'usage_id', NULL,
                                                   'amount', v_rest);
  END IF;
  RETURN v_postings;
END $$;

-- One page of the dormancy run: active customer wallets with a policy, after
-- p_after_id in id order, whose last activity is at least the policy's inactivity
-- less its warning period ago. Each wallet in its own subtransaction (keep pages
-- small, as for expire_lots), under its lock taken with SKIP LOCKED: a wallet a posting
-- holds is 'busy' and left for the next run, and what decides (status, last activity,
-- balance) is read again under the lock, so a usage either committed before (the
-- wallet is no longer inactive) or waits and then finds it dormant. Per (wallet,
-- period) a warning goes out once (the caller publishes it: at most once, never twice) and dormancy happens once: a repeated run finds the
-- period's row and does nothing ('none').
-- A wallet's sweep or breakage is a few postings (dormancy_take), all inside the
-- wallet's one subtransaction: all of them or none.
--   outcome: warned (dormant_on: when it will be dormant), marked, swept or broken
--   (amount, transaction_id: the first posting, postings: one per group), none, busy,
--   failed (error). closed: whether it was closed at dormancy (policy delete).
CREATE FUNCTION ledger.dormancy_run(p_limit integer, p_after_id bigint DEFAULT 0)
RETURNS TABLE (wallet_id bigint, asset_code text, model text, outcome text, amount bigint,
               transaction_id bigint, dormant_on text, error text, postings jsonb, closed boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
#variable_conflict use_column
DECLARE
  v_due record;
  v_wallet record;
  v_since timestamptz;
  v_expired bigint;
BEGIN
  FOR v_due IN
    SELECT w.id, w.asset_code, w.model, p.inactivity, p.warning, p.action, p.reactivation
      FROM wallets w JOIN dormancy_policies p ON p.asset_code = w.asset_code AND p.model = w.model
     WHERE w.id > p_after_id AND w.kind = 'customer' AND w.status = 'active'
       -- a shared pool's member holds nothing and its usage is the pool's activity
       AND NOT (w.parent_id IS NOT NULL
                AND EXISTS (SELECT 1 FROM wallets r WHERE r.id = w.root_id AND r.spend_mode = 'shared_pool'))
       AND coalesce(w.last_activity_at, w.created_at) <= now() - (p.inactivity - p.warning)
       -- warned for this period already: not again until due, so a run cut short by its
       -- budget (a paced job, docs/background-jobs.md) leaves it behind and the next run
       -- goes further instead of rescanning the same warned wallets
       AND (coalesce(w.last_activity_at, w.created_at) <= now() - p.inactivity
            OR NOT EXISTS (SELECT 1 FROM dormancy_periods d
                            WHERE d.wallet_id = w.id AND d.since = coalesce(w.last_activity_at, w.created_at)))
     ORDER BY w.id LIMIT p_limit
  LOOP
    wallet_id := v_due.id;
    asset_code := v_due.asset_code;
    model := v_due.model;
    outcome := 'none';
    amount := NULL;
    transaction_id := NULL;
    dormant_on := NULL;
    error := NULL;
    postings := NULL;
    closed := NULL;
    BEGIN
      SELECT w.status, w.balance, coalesce(w.last_activity_at, w.created_at) AS since INTO v_wallet
        FROM wallets w WHERE w.id = v_due.id FOR NO KEY UPDATE SKIP LOCKED;
      IF NOT FOUND THEN
        outcome := 'busy';
      ELSIF v_wallet.status = 'active' AND v_wallet.since <= now() - v_due.inactivity
            AND v_due.reactivation = 'delete'
            AND (v_wallet.balance < 0 OR EXISTS (SELECT 1 FROM lots l WHERE l.wallet_id = v_due.id
                                                    AND l.remaining > 0 AND l.expires_at <= now())) THEN
        -- Closing needs an empty wallet (wallets_closed_is_empty): credit in lots already
        -- due is the expiry job's to take first, and the next run closes it; a wallet in
        -- debt is never closed by dormancy. Left active and untouched, like a held one.
        outcome := 'busy';
      ELSIF v_wallet.status = 'active' AND v_wallet.since <= now() - v_due.inactivity THEN
        INSERT INTO dormancy_periods (wallet_id, since) VALUES (v_due.id, v_wallet.since) ON CONFLICT DO NOTHING;
        -- the spendable balance: credit in expired lots is the expiry job's, which
        -- empties a dormant wallet's due lots into breakage like any other's
        SELECT coalesce(sum(l.remaining), 0) INTO v_expired FROM lots l
         WHERE l.wallet_id = v_due.id AND l.remaining > 0 AND l.expires_at <= now();
        IF v_due.action IN ('sweep', 'breakage') AND v_wallet.balance - v_expired > 0 THEN
          amount := v_wallet.balance - v_expired;
          postings := dormancy_take(v_due.id, v_wallet.since, v_due.asset_code,
                                    CASE v_due.action WHEN 'sweep' THEN 'dormant_sweep' ELSE 'dormant_breakage' END,
                                    amount);
          transaction_id := (postings -> 0 ->> 'transaction_id')::bigint;
          outcome := CASE v_due.action WHEN 'sweep' THEN 'swept' ELSE 'broken' END;
        ELSE
          outcome := 'marked';
        END IF;
        UPDATE dormancy_periods d SET dormant_at = now(), sweep_id = transaction_id, swept_amount = amount
         WHERE d.wallet_id = v_due.id AND d.since = v_wallet.since;
        closed := v_due.reactivation = 'delete';
        UPDATE wallets SET status = CASE WHEN closed THEN 'closed' ELSE 'dormant' END, updated_at = now()
         WHERE id = v_due.id;
      ELSIF v_wallet.status = 'active' AND v_wallet.since <= now() - (v_due.inactivity - v_due.warning) THEN
        INSERT INTO dormancy_periods (wallet_id, since, warned_at) VALUES (v_due.id, v_wallet.since, now())
        ON CONFLICT DO NOTHING;
        IF FOUND THEN
          outcome := 'warned';
          dormant_on := iso_utc(v_wallet.since + v_due.inactivity);
        END IF;
      END IF;
    EXCEPTION WHEN OTHERS THEN
      outcome := 'failed';
      amount := NULL;
      transaction_id := NULL;
      postings := NULL;
      closed := NULL;
      GET STACKED DIAGNOSTICS error = MESSAGE_TEXT;
    END;
    RETURN NEXT;
  END LOOP;
END $$;

-- A policy set by an operator (python -m common.dormancy policy set): the row for its
-- asset and model, created or replaced, and the change in the audit log. The table's
-- CHECKs (migrations 0014, 0015) are the guard; the CLI explains its refusals first.
CREATE FUNCTION ledger.dormancy_set_policy(p_asset text, p_model text, p_inactivity interval, p_warning interval,
                                           p_action text, p_reactivation text, p_actor jsonb DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_before jsonb;
  v_after jsonb;
BEGIN
  SELECT to_jsonb(p) - 'updated_at' INTO v_before FROM dormancy_policies p
   WHERE p.asset_code = p_asset AND p.model = p_model;
  INSERT INTO dormancy_policies (asset_code, model, inactivity, warning, action, reactivation, updated_at)
  VALUES (p_asset, p_model, p_inactivity, p_warning, p_action, p_reactivation, now())
  ON CONFLICT (asset_code, model) DO UPDATE
     SET inactivity = excluded.inactivity, warning = excluded.warning, action = excluded.action,
         reactivation = excluded.reactivation, updated_at = now()
  RETURNING to_jsonb(dormancy_policies) - 'updated_at' INTO v_after;
  PERFORM audit(coalesce(p_actor, jsonb_build_object('principal', session_user::text)), 'dormancy.set_policy',
                format('dormancy_policy:%s:%s', p_asset, p_model), v_before, v_after, NULL);
END $$;
