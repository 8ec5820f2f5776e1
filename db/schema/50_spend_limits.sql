-- Spend limits: per wallet and period (UTC day, ISO week or calendar month), on a
-- member and on any ancestor, which caps its whole subtree.
--
-- A usage charges the counter of every limit on its path, under the counter's row lock,
-- after the wallet locks (one lock order: wallets, then counters). Each charge is
-- recorded, so a void gives back exactly what its usage took and every counter equals
-- the sum of its charges.

CREATE FUNCTION ledger.period_start(p_period text, p_at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
  SELECT date_trunc(p_period, p_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;

-- Charge a usage to every limit on the spender's path (root to self), in wallet and
-- period order; refuse the whole posting when one would be exceeded.
CREATE FUNCTION ledger.charge_spend(p_tx bigint, p_path bigint[], p_amount bigint, p_at timestamptz)
RETURNS void LANGUAGE plpgsql SET search_path = ledger, pg_temp AS $$
DECLARE
  v_limit record;
  v_start timestamptz;
  v_spent bigint;
BEGIN
  FOR v_limit IN
    SELECT wallet_id, period, amount FROM spend_limits WHERE wallet_id = ANY (p_path) ORDER BY wallet_id, period
  LOOP
    v_start := period_start(v_limit.period, p_at);
    INSERT INTO spend_counters AS c (wallet_id, period, period_start, spent)
    SELECT v_limit.wallet_id, v_limit.period, v_start, p_amount WHERE p_amount <= v_limit.amount
    ON CONFLICT (wallet_id, period, period_start)
      DO UPDATE SET spent = c.spent + excluded.spent WHERE c.spent + excluded.spent <= v_limit.amount
    RETURNING spent INTO v_spent;
    IF v_spent IS NULL THEN
      SELECT spent INTO v_spent FROM spend_counters
       WHERE wallet_id = v_limit.wallet_id AND period = v_limit.period AND period_start = v_start;
      PERFORM refuse('spend_limit_exceeded', jsonb_build_object(
        'wallet_id', v_limit.wallet_id, 'period', v_limit.period, 'limit', v_limit.amount,
        'spent', coalesce(v_spent, 0), 'requested', p_amount, 'period_start', iso_utc(v_start)));
    END IF;
    INSERT INTO spend_charges (transaction_id, wallet_id, period, period_start, amount)
    VALUES (p_tx, v_limit.wallet_id, v_limit.period, v_start, p_amount);
    v_spent := NULL;
  END LOOP;
END $$;

-- A void of a usage gives back what the usage charged, to the counters it charged.
CREATE FUNCTION ledger.refund_spend(p_tx bigint, p_voided bigint) RETURNS void
LANGUAGE plpgsql SET search_path = ledger, pg_temp AS $$
DECLARE
  v_charge record;
BEGIN
  FOR v_charge IN
    SELECT wallet_id, period, period_start, amount FROM spend_charges
     WHERE transaction_id = p_voided ORDER BY wallet_id, period
  LOOP
    UPDATE spend_counters SET spent = spent - v_charge.amount
     WHERE wallet_id = v_charge.wallet_id AND period = v_charge.period AND period_start = v_charge.period_start;
    INSERT INTO spend_charges (transaction_id, wallet_id, period, period_start, amount)
    VALUES (p_tx, v_charge.wallet_id, v_charge.period, v_charge.period_start, -v_charge.amount);
  END LOOP;
END $$;
