-- Callers and administrative changes: the caller lookup every request's authorization
-- starts from, and the audited procedures through which wallets and assets change.
--
-- Every administrative change writes one row to ledger.audit_log in the same database
-- transaction, with the actor the function verified (principal, issuer, role, tenant,
-- request id), before, after and reason. The functions' role changes wallets only
-- through these procedures (db/schema/99_grants.sql) and can't change or delete an
-- audit row (append-only: 20_guards.sql).

CREATE FUNCTION ledger.audit(p_actor jsonb, p_action text, p_target text, p_before jsonb, p_after jsonb,
                             p_reason text)
RETURNS bigint LANGUAGE sql SET search_path = ledger, pg_temp AS $$
  INSERT INTO audit_log (actor, action, target, before, after, reason)
  VALUES (coalesce(p_actor, jsonb_build_object('principal', session_user::text)), p_action, p_target,
          p_before, p_after, nullif(p_reason, ''))
  RETURNING id
$$;

-- A verified token's principal and its live grants, one row per grant (one row with a
-- NULL role when it has none). Read once per instance and cached for a short while.
CREATE FUNCTION ledger.caller(p_issuer text, p_subject text)
RETURNS TABLE (principal_id text, kind text, tenant text, owner_id text, status text, principal_rate_limits jsonb,
               role text, scopes text[], boundary text, root_wallet_id bigint, role_rate_limits jsonb)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
  SELECT p.id, p.kind, p.tenant, p.owner_id, p.status, p.rate_limits,
         g.role, r.scopes, g.boundary, g.root_wallet_id, r.rate_limits
    FROM principals p
    LEFT JOIN grants g ON g.principal_id = p.id AND g.status = 'active'
    LEFT JOIN roles r ON r.name = g.role
   WHERE p.issuer = p_issuer AND p.subject = p_subject
   ORDER BY g.id
$$;

CREATE FUNCTION ledger.wallet_snapshot(p_id bigint) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = ledger, pg_temp AS $$
  SELECT jsonb_build_object(
           'status', w.status, 'credit_limit', w.credit_limit, 'spend_mode', w.spend_mode,
           'spend_limits', coalesce((SELECT jsonb_object_agg(l.period, l.amount ORDER BY l.period)
                                       FROM spend_limits l WHERE l.wallet_id = w.id), '{}'::jsonb))
    FROM wallets w WHERE w.id = p_id
$$;

-- A new customer wallet. A credit limit above p_dual_control_above starts at zero and
-- waits as a pending change for a second operator.
CREATE FUNCTION ledger.create_wallet(p_owner_id text, p_asset text, p_model text, p_credit_limit bigint,
                                     p_metadata jsonb, p_parent_id bigint, p_spend_mode text, p_actor jsonb,
                                     p_dual_control_above bigint DEFAULT NULL,
                                     OUT wallet_id bigint, OUT pending_change_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_held boolean := p_dual_control_above IS NOT NULL AND p_credit_limit > p_dual_control_above;
BEGIN
  INSERT INTO wallets (owner_id, asset_code, model, credit_limit, metadata, parent_id, spend_mode)
  VALUES (p_owner_id, p_asset, p_model, CASE WHEN v_held THEN 0 ELSE p_credit_limit END,
          coalesce(p_metadata, '{}'::jsonb), p_parent_id, p_spend_mode)
  RETURNING id INTO wallet_id;
  PERFORM audit(p_actor, 'wallet.create', 'wallet:' || wallet_id, NULL,
                wallet_snapshot(wallet_id) || jsonb_build_object('owner_id', p_owner_id, 'asset', p_asset,
                                                                 'model', p_model, 'parent_id', p_parent_id),
                NULL);
  IF v_held THEN
    pending_change_id := request_change(p_actor, 'credit_limit', 'wallet:' || wallet_id,
                                        jsonb_build_object('wallet_id', wallet_id, 'credit_limit', p_credit_limit),
                                        'credit limit given at creation');
  END IF;
END $$;

-- A wallet's status, credit limit, spend mode and spend limits, in one audited change.
-- A credit limit raised above p_dual_control_above is not applied: it becomes a
-- pending change (the rest of the change applies at once).
CREATE FUNCTION ledger.update_wallet(p_id bigint, p_status text, p_credit_limit bigint, p_spend_mode text,
                                     p_spend_limits jsonb, p_actor jsonb, p_reason text DEFAULT NULL,
                                     p_dual_control_above bigint DEFAULT NULL)
RETURNS bigint  -- the pending change's id, when the credit limit waits for approval
LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_before jsonb;
  v_old_limit bigint;
  v_limit bigint := p_credit_limit;
  v_pending bigint;
  v_period record;
BEGIN
  SELECT credit_limit INTO v_old_limit FROM wallets WHERE id = p_id FOR NO KEY UPDATE;
  IF NOT FOUND THEN
    PERFORM refuse('wallet_not_found', jsonb_build_object('wallet_id', p_id));
  END IF;
  v_before := wallet_snapshot(p_id);
  IF v_limit IS NOT NULL AND v_limit > v_old_limit AND p_dual_control_above IS NOT NULL
     AND v_limit > p_dual_control_above THEN
    v_pending := request_change(p_actor, 'credit_limit', 'wallet:' || p_id,
                                jsonb_build_object('wallet_id', p_id, 'credit_limit', v_limit), p_reason);
    v_limit := NULL;
  END IF;
  UPDATE wallets SET status = coalesce(p_status, status), credit_limit = coalesce(v_limit, credit_limit),
                     spend_mode = coalesce(p_spend_mode, spend_mode), updated_at = now()
   WHERE id = p_id;
  FOR v_period IN SELECT key AS period, value AS amount FROM jsonb_each(coalesce(p_spend_limits, '{}'::jsonb))
                   ORDER BY key
  LOOP
    IF jsonb_typeof(v_period.amount) = 'null' THEN
      DELETE FROM spend_limits WHERE wallet_id = p_id AND period = v_period.period;
    ELSE
      INSERT INTO spend_limits (wallet_id, period, amount) VALUES (p_id, v_period.period, (v_period.amount)::bigint)
      ON CONFLICT (wallet_id, period) DO UPDATE SET amount = excluded.amount, updated_at = now();
    END IF;
  END LOOP;
  IF wallet_snapshot(p_id) IS DISTINCT FROM v_before THEN
    PERFORM audit(p_actor, 'wallet.update', 'wallet:' || p_id, v_before, wallet_snapshot(p_id), p_reason);
  END IF;
  RETURN v_pending;
END $$;

-- Dual control --------------------------------------------------------------------

CREATE FUNCTION ledger.request_change(p_actor jsonb, p_kind text, p_target text, p_change jsonb, p_reason text)
RETURNS bigint LANGUAGE plpgsql SET search_path = ledger, pg_temp AS $$
DECLARE
  v_id bigint;
BEGIN
  INSERT INTO pending_changes (kind, target, change, reason, requested_by)
  VALUES (p_kind, p_target, p_change, nullif(p_reason, ''), p_actor)
  RETURNING id INTO v_id;
  PERFORM audit(p_actor, 'change.request', 'change:' || v_id, NULL,
                jsonb_build_object('kind', p_kind, 'target', p_target, 'change', p_change), p_reason);
  RETURN v_id;
END $$;

-- A second operator approves or rejects a pending change; an approved one applies in
-- the same transaction. The requester can't decide their own change
-- (pending_changes_second_person).
CREATE FUNCTION ledger.decide_change(p_id bigint, p_approve boolean, p_actor jsonb, p_reason text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = ledger, pg_temp AS $$
DECLARE
  v_change record;
  v_before jsonb;
BEGIN
  SELECT * INTO v_change FROM pending_changes WHERE id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    PERFORM refuse('change_not_found', jsonb_build_object('change_id', p_id));
  END IF;
  IF v_change.status <> 'pending' THEN
    PERFORM refuse('change_decided', jsonb_build_object('change_id', p_id, 'status', v_change.status));
  END IF;
  IF v_change.requested_by->>'principal' = p_actor->>'principal' THEN
    PERFORM refuse('second_operator_required', jsonb_build_object('change_id', p_id));
  END IF;
  UPDATE pending_changes SET status = CASE WHEN p_approve THEN 'approved' ELSE 'rejected' END,
                             decided_by = p_actor, decided_at = now()
   WHERE id = p_id;
  PERFORM audit(p_actor, CASE WHEN p_approve THEN 'change.approve' ELSE 'change.reject' END, 'change:' || p_id,
                jsonb_build_object('status', 'pending'), jsonb_build_object('requested_by', v_change.requested_by),
                p_reason);
  IF p_approve AND v_change.kind = 'credit_limit' THEN
    v_before := wallet_snapshot((v_change.change->>'wallet_id')::bigint);
    UPDATE wallets SET credit_limit = (v_change.change->>'credit_limit')::bigint, updated_at = now()
     WHERE id = (v_change.change->>'wallet_id')::bigint;
    PERFORM audit(p_actor, 'wallet.update', v_change.target, v_before,
                  wallet_snapshot((v_change.change->>'wallet_id')::bigint),
                  format('change %s requested by %s', p_id, v_change.requested_by->>'principal'));
  ELSIF p_approve AND v_change.kind = 'grant' THEN
    UPDATE grants SET status = 'active', updated_at = now()
     WHERE id = (v_change.change->>'grant_id')::bigint AND status = 'pending';
    PERFORM audit(p_actor, 'grant.activate', v_change.target, jsonb_build_object('status', 'pending'),
                  jsonb_build_object('status', 'active'),
                  format('change %s requested by %s', p_id, v_change.requested_by->>'principal'));
  ELSIF v_change.kind = 'grant' THEN
    UPDATE grants SET status = 'revoked', updated_at = now()
     WHERE id = (v_change.change->>'grant_id')::bigint AND status = 'pending';
  END IF;
  RETURN jsonb_build_object('id', p_id, 'status', CASE WHEN p_approve THEN 'approved' ELSE 'rejected' END);
END $$;
