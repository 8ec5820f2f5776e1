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

-- Brings a dormant wallet back: it becomes active, and the sweep of its period, if
-- any, is voided, which returns exactly what was swept (its lots with their expiry)
-- out of the dormant account: never new money. Reactivation counts as the customer's
-- activity, so the next period starts now. A wallet that is not dormant is left as it
-- is (NULL). Returns the void's transaction id.
CREATE FUNCTION ledger.dormancy_reactivate(p_wallet_id bigint, p_actor jsonb DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_wallet record;
  v_period record;
  v_dormant bigint;
  v_void bigint;
BEGIN
  SELECT id, status, asset_code INTO v_wallet FROM wallets WHERE id = p_wallet_id AND kind = 'customer'
     FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    PERFORM refuse('wallet_not_found', jsonb_build_object('wallet_id', p_wallet_id));
  END IF;
  IF v_wallet.status <> 'dormant' THEN
    RETURN NULL;
  END IF;
  UPDATE wallets SET status = 'active', last_activity_at = now(), updated_at = now() WHERE id = p_wallet_id;
  SELECT since, sweep_id, swept_amount INTO v_period FROM dormancy_periods
   WHERE wallet_id = p_wallet_id AND dormant_at IS NOT NULL AND reactivated_at IS NULL;
  IF v_period.sweep_id IS NOT NULL THEN
    SELECT w.id INTO v_dormant FROM wallets w
     WHERE w.kind = 'system' AND w.asset_code = v_wallet.asset_code AND w.system_role = 'dormant';
    SELECT p.transaction_id INTO STRICT v_void
      FROM commit_posting(format('dormant-reactivation:%s', v_period.sweep_id), 'dormant-reactivation', 'void',
                          v_wallet.asset_code, v_period.swept_amount, p_wallet_id, NULL,
                          ARRAY[p_wallet_id, v_dormant], ARRAY[v_period.swept_amount, -v_period.swept_amount],
                          p_description => 'dormant wallet reactivated', p_voids_transaction_id => v_period.sweep_id,
                          p_actor => coalesce(p_actor, jsonb_build_object('principal', 'ledger:dormancy', 'role', 'job'))) p;
  END IF;
  UPDATE dormancy_periods SET reactivated_at = now(), reactivation_id = v_void
   WHERE wallet_id = p_wallet_id AND since = v_period.since;
  RETURN v_void;
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
--   outcome: warned (dormant_on: when it will be dormant), marked, swept (amount,
--   transaction_id), none, busy, failed (error).
CREATE FUNCTION ledger.dormancy_run(p_limit integer, p_after_id bigint DEFAULT 0)
RETURNS TABLE (wallet_id bigint, asset_code text, model text, outcome text, amount bigint,
               transaction_id bigint, dormant_on text, error text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
#variable_conflict use_column
DECLARE
  v_due record;
  v_wallet record;
  v_since timestamptz;
  v_expired bigint;
  v_dormant bigint;
  v_result record;
BEGIN
  FOR v_due IN
    SELECT w.id, w.asset_code, w.model, p.inactivity, p.warning, p.action
      FROM wallets w JOIN dormancy_policies p ON p.asset_code = w.asset_code AND p.model = w.model
     WHERE w.id > p_after_id AND w.kind = 'customer' AND w.status = 'active'
       -- a shared pool's member holds nothing and its usage is the pool's activity
       AND NOT (w.parent_id IS NOT NULL
                AND EXISTS (SELECT 1 FROM wallets r WHERE r.id = w.root_id AND r.spend_mode = 'shared_pool'))
       AND coalesce(w.last_activity_at, w.created_at) <= now() - (p.inactivity - p.warning)
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
    BEGIN
      SELECT w.status, w.balance, coalesce(w.last_activity_at, w.created_at) AS since INTO v_wallet
        FROM wallets w WHERE w.id = v_due.id FOR NO KEY UPDATE SKIP LOCKED;
      IF NOT FOUND THEN
        outcome := 'busy';
      ELSIF v_wallet.status = 'active' AND v_wallet.since <= now() - v_due.inactivity THEN
        INSERT INTO dormancy_periods (wallet_id, since) VALUES (v_due.id, v_wallet.since) ON CONFLICT DO NOTHING;
        -- the spendable balance: credit in expired lots is the expiry job's, which
        -- empties a dormant wallet's due lots into breakage like any other's
        SELECT coalesce(sum(l.remaining), 0) INTO v_expired FROM lots l
         WHERE l.wallet_id = v_due.id AND l.remaining > 0 AND l.expires_at <= now();
        IF v_due.action = 'sweep' AND v_wallet.balance - v_expired > 0 THEN
          SELECT w.id INTO v_dormant FROM wallets w
           WHERE w.kind = 'system' AND w.asset_code = v_due.asset_code AND w.system_role = 'dormant';
          amount := v_wallet.balance - v_expired;
          SELECT * INTO STRICT v_result
            FROM commit_posting(dormancy_sweep_key(v_due.id, v_wallet.since), 'dormant-sweep', 'dormant_sweep',
                                v_due.asset_code, amount, v_due.id, NULL,
                                ARRAY[v_due.id, v_dormant], ARRAY[-amount, amount],
                                p_description => 'dormant wallet swept',
                                p_actor => jsonb_build_object('principal', 'ledger:dormancy', 'role', 'job'));
          transaction_id := v_result.transaction_id;
          outcome := 'swept';
        ELSE
          outcome := 'marked';
        END IF;
        UPDATE dormancy_periods d SET dormant_at = now(), sweep_id = transaction_id, swept_amount = amount
         WHERE d.wallet_id = v_due.id AND d.since = v_wallet.since;
        UPDATE wallets SET status = 'dormant', updated_at = now() WHERE id = v_due.id;
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
      GET STACKED DIAGNOSTICS error = MESSAGE_TEXT;
    END;
    RETURN NEXT;
  END LOOP;
END $$;
