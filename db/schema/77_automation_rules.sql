-- Automatic actions' rules (db/migrations/0010_automation_rules.sql): how a tenant's
-- rules are created, paused, resumed and deleted, each change one audited call.
--
-- The wallets function's role has no INSERT or UPDATE on ledger.automation_rules
-- (99_grants.sql): these procedures are the only way a rule changes, and each writes one
-- row to ledger.audit_log under the rule ('rule:<id>'), so one target reads the rule's
-- whole story. A rule belongs to its creator's tenant: a change names the tenant, and a
-- rule of another tenant is refused as if it did not exist (rule_not_found). Who may
-- change which rule within the tenant (scopes, boundaries) is the service's to decide
-- (common/automation_rules.py), before it calls these.

-- A rule as the API answers it, and as its audit rows record it.
CREATE FUNCTION ledger.rule_json(p_id bigint) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = ledger, pg_temp AS $$
  SELECT jsonb_build_object(
           'id', r.id, 'tenant', r.tenant, 'kind', r.kind, 'wallet_id', r.wallet_id, 'asset', w.asset_code,
           'threshold', r.threshold, 'amount', r.amount, 'funding_ref', r.funding_ref, 'period', r.period,
           'member_ids', to_jsonb(r.member_ids), 'status', r.status, 'armed', r.armed, 'metadata', r.metadata,
           'created_by', r.created_by, 'created_at', iso_utc(r.created_at), 'updated_at', iso_utc(r.updated_at))
    FROM automation_rules r JOIN wallets w ON w.id = r.wallet_id
   WHERE r.id = p_id
$$;

-- A new rule on a customer wallet that is not closed. A recurring allocation's wallet is
-- a pool (a wallet of an enterprise's or a reseller's tree), and each member it names is
-- one of the pool's children (NULL: every child, as they are at each period). The
-- table's own constraints refuse a rule of the wrong shape (automation_rule_shape).
CREATE FUNCTION ledger.create_rule(p_tenant text, p_kind text, p_wallet_id bigint, p_threshold bigint,
                                   p_amount bigint, p_funding_ref text, p_period text, p_member_ids bigint[],
                                   p_metadata jsonb, p_actor jsonb)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_wallet record;
  v_stranger bigint;
  v_id bigint;
  v_after jsonb;
BEGIN
  SELECT kind, status, model INTO v_wallet FROM wallets WHERE id = p_wallet_id;
  IF NOT FOUND THEN
    PERFORM refuse('wallet_not_found', jsonb_build_object('wallet_id', p_wallet_id));
  END IF;
  IF v_wallet.kind = 'system' THEN
    PERFORM refuse('system_account', jsonb_build_object('wallet_id', p_wallet_id));
  END IF;
  IF v_wallet.status = 'closed' THEN
    PERFORM refuse('wallet_closed', jsonb_build_object('wallet_id', p_wallet_id));
  END IF;
  IF p_kind = 'recurring_allocation' THEN
    IF v_wallet.model NOT IN ('enterprise', 'reseller') THEN
      PERFORM refuse('not_a_pool', jsonb_build_object('wallet_id', p_wallet_id));
    END IF;
    SELECT m INTO v_stranger FROM unnest(p_member_ids) AS m
     WHERE NOT EXISTS (SELECT 1 FROM wallets c WHERE c.id = m AND c.parent_id = p_wallet_id)
     LIMIT 1;
    IF v_stranger IS NOT NULL THEN
      PERFORM refuse('member_not_in_pool', jsonb_build_object('wallet_id', p_wallet_id, 'member_id', v_stranger));
    END IF;
  END IF;
  INSERT INTO automation_rules (tenant, kind, wallet_id, threshold, amount, funding_ref, period, member_ids,
                                metadata, created_by)
  VALUES (p_tenant, p_kind, p_wallet_id, p_threshold, p_amount, p_funding_ref, p_period, p_member_ids,
          coalesce(p_metadata, '{}'::jsonb), p_actor)
  RETURNING id INTO v_id;
  v_after := rule_json(v_id);
  PERFORM audit(p_actor, 'rule.create', 'rule:' || v_id, NULL, v_after, NULL);
  RETURN v_after;
END $$;

-- Pause, resume or delete a rule of the tenant. Resuming also arms a threshold rule
-- again (the way to try an auto top-up again after a declined charge). Deleted is final
-- and kept for the record: deleting it again changes nothing, pausing or resuming it is
-- refused. A change that changes nothing writes no audit row.
CREATE FUNCTION ledger.change_rule(p_id bigint, p_tenant text, p_change text, p_actor jsonb)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_rule record;
  v_status text;
  v_armed boolean;
  v_before jsonb;
BEGIN
  SELECT status, armed INTO v_rule FROM automation_rules WHERE id = p_id AND tenant = p_tenant FOR UPDATE;
  IF NOT FOUND THEN
    PERFORM refuse('rule_not_found', jsonb_build_object('rule_id', p_id));
  END IF;
  IF v_rule.status = 'deleted' AND p_change <> 'delete' THEN
    PERFORM refuse('rule_deleted', jsonb_build_object('rule_id', p_id));
  END IF;
  -- any other change is a bug: NULL, which the status column refuses
  v_status := CASE p_change WHEN 'pause' THEN 'paused' WHEN 'resume' THEN 'active' WHEN 'delete' THEN 'deleted' END;
  v_armed := v_rule.armed OR p_change = 'resume';
  IF (v_status, v_armed) IS DISTINCT FROM (v_rule.status, v_rule.armed) THEN
    v_before := rule_json(p_id);
    UPDATE automation_rules SET status = v_status, armed = v_armed, updated_at = now() WHERE id = p_id;
    PERFORM audit(p_actor, 'rule.' || p_change, 'rule:' || p_id, v_before, rule_json(p_id), NULL);
  END IF;
  RETURN rule_json(p_id);
END $$;
