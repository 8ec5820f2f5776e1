-- Automatic actions' decisions (docs/automation.md). Whether a rule acts is decided
-- here, atomically, on the wallet's balance now: an event only says which wallets to
-- look at, never what their balance is (it may be stale, late or out of order).

-- Whether `p_rule_id` acts on `p_trigger` ('event:<transaction id>' or 'period:<start>'),
-- and the firing that records it. With the rule locked:
--   * a firing of (rule, trigger) exists: a redelivery, which carries on with a firing
--     still in flight (started, charged: with the charge it made, never charging again)
--     and does nothing once it is done;
--   * a recurring allocation acts once per period;
--   * a threshold rule re-arms when the wallet's available balance is at or above its
--     threshold, and acts when it is below, armed, the wallet active and (an auto
--     top-up) none of the wallet's is in flight; acting disarms it: once per crossing.
CREATE FUNCTION ledger.automation_fire(p_rule_id bigint, p_trigger text)
RETURNS TABLE (act boolean, firing_id bigint, firing_status text, firing_charge_id text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_rule record;
  v_firing record;
  v_wallet record;
  v_available bigint;
  v_id bigint;
BEGIN
  SELECT * INTO v_rule FROM automation_rules WHERE id = p_rule_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN QUERY SELECT false, NULL::bigint, NULL::text, NULL::text;
    RETURN;
  END IF;
  SELECT f.id, f.status, f.charge_id INTO v_firing FROM automation_firings f WHERE f.rule_id = p_rule_id AND f.trigger = p_trigger;
  IF FOUND THEN
    RETURN QUERY SELECT v_firing.status IN ('started', 'charged'), v_firing.id, v_firing.status, v_firing.charge_id;
    RETURN;
  END IF;
  IF v_rule.status <> 'active' THEN
    RETURN QUERY SELECT false, NULL::bigint, NULL::text, NULL::text;
    RETURN;
  END IF;
  IF v_rule.kind = 'recurring_allocation' THEN
    INSERT INTO automation_firings (rule_id, trigger, kind, wallet_id)
    VALUES (p_rule_id, p_trigger, v_rule.kind, v_rule.wallet_id) RETURNING id INTO v_id;
    RETURN QUERY SELECT true, v_id, 'started'::text, NULL::text;
    RETURN;
  END IF;
  -- the available balance as the wallets' reads show it: expired lots are not spendable
  -- even before the expiry job has run
  SELECT w.status, w.balance + w.credit_limit - coalesce((
           SELECT sum(l.remaining) FROM lots l
            WHERE l.wallet_id = w.id AND l.remaining > 0 AND l.expires_at <= clock_timestamp()), 0) AS available
    INTO v_wallet FROM wallets w WHERE w.id = v_rule.wallet_id;
  v_available := v_wallet.available;
  IF v_available >= v_rule.threshold THEN
    IF NOT v_rule.armed THEN
      UPDATE automation_rules SET armed = true WHERE id = p_rule_id;
    END IF;
    RETURN QUERY SELECT false, NULL::bigint, NULL::text, NULL::text;
    RETURN;
  END IF;
  IF NOT v_rule.armed OR v_wallet.status <> 'active' THEN
    -- fired already for this crossing; or a frozen or closed wallet, which takes no
    -- top-up (a charge would take money the ledger could not credit)
    RETURN QUERY SELECT false, NULL::bigint, NULL::text, NULL::text;
    RETURN;
  END IF;
  BEGIN
    INSERT INTO automation_firings (rule_id, trigger, kind, wallet_id, detail)
    VALUES (p_rule_id, p_trigger, v_rule.kind, v_rule.wallet_id, jsonb_build_object('available', v_available))
    RETURNING id INTO v_id;
  EXCEPTION WHEN unique_violation THEN
    -- another auto top-up of the wallet is in flight (automation_firings_one_topup_in_flight):
    -- the rule stays armed, and the next event after that one judges again
    RETURN QUERY SELECT false, NULL::bigint, NULL::text, NULL::text;
    RETURN;
  END;
  UPDATE automation_rules SET armed = false WHERE id = p_rule_id;
  RETURN QUERY SELECT true, v_id, 'started'::text, NULL::text;
END $$;

-- A firing's progress: forward only, from in flight (started, charged) to charged or to
-- done (finished, declined, failed); a done firing never changes again. Returns whether
-- it moved (a second copy of a redelivery may have got there first).
CREATE FUNCTION ledger.automation_record(p_firing_id bigint, p_status text, p_charge_id text DEFAULT NULL,
                                         p_transaction_id bigint DEFAULT NULL, p_detail jsonb DEFAULT '{}')
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
BEGIN
  UPDATE automation_firings
     SET status = p_status, charge_id = coalesce(p_charge_id, charge_id),
         transaction_id = coalesce(p_transaction_id, transaction_id),
         detail = detail || coalesce(p_detail, '{}'::jsonb), updated_at = clock_timestamp()
   WHERE id = p_firing_id AND status IN ('started', 'charged')
     AND p_status IN ('charged', 'finished', 'declined', 'failed');
  RETURN FOUND;
END $$;
